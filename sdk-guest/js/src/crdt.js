/*
 * CRDT entities' typed handles: one class per crdt type of the WIT (`g-counter`, `pn-counter`,
 * `g-set`, `or-set`, `lww-register`, `flag`, `or-map`, `vote`). A handle reads the data at its
 * path (or-map keys, outermost first) from the JSON view the host passed for the command, and
 * records the operations the command answers with (`crdt-op`s, applied by the host in order
 * as this node's replica).
 *
 * All handles of one command share a `CrdtRecorder`: the recorded operations and a working copy
 * of the view. Every operation is also applied to the working copy as this replica sees it, so
 * reads reflect the command's own operations: a counter's value with its increments, a set
 * with its adds and removes, a register with its `set`, a flag, a map's keys. A vote shows
 * this command's vote only while no node had voted (the view does not say whether this node's
 * vote is among the others). The host stays the judge: a handle of one type used on data of
 * another is not checked here (the view cannot tell a g-counter from a pn-counter, say); the
 * host fails the command.
 *
 * Misuse (an increment that is not a non-negative 64-bit integer, an element with no JSON
 * form, a vote that is not a boolean) is recorded like a misuse of the context: the operation
 * is dropped and the command fails with a message starting with `entity error:`. A map key
 * that is not a string, or a type name that is not one of the eight, is a bug in the entity's
 * code: a `TypeError`.
 */

import { canonical, compareText, copyJson, stringify } from './json.js';
import { CRDT_TYPES, emptyValue, fits, isCount, isObject } from './crdt-model.js';
import { UINT64_MAX } from './schema.js';

export {
  CONSISTENCIES,
  CRDT_ACTIONS,
  CRDT_TYPES,
  CrdtRecorder,
  emptyValue,
  fits,
  insertSorted,
} from './crdt-model.js';

/** What every typed handle has: its type, path, the value read and the recording of ops. */
export class CrdtHandle {
  #recorder;
  #path;
  #type;

  /**
   * @param {CrdtRecorder} recorder
   * @param {string[]} path
   * @param {string} type
   */
  constructor(recorder, path, type) {
    this.#recorder = recorder;
    this.#path = Object.freeze(path.slice());
    this.#type = type;
  }

  /** The crdt type this handle takes the data as. */
  get type() {
    return this.#type;
  }

  /** The or-map keys leading to the data (empty for the entity's own data). */
  get path() {
    return this.#path.slice();
  }

  /** Whether the data exists (the entity's own data always does; a map key once written). */
  get exists() {
    return this.#recorder.read(this.#path).found;
  }

  /**
   * The data's value as the host's JSON view shows it, with this command's operations so far
   * (a copy); the type's empty value when the data does not exist.
   */
  get value() {
    return copyJson(this._current());
  }

  /** The JSON form of a handle is its value. */
  toJSON() {
    return this.value;
  }

  /** @protected The current view of the data (not a copy); the empty value if absent. */
  _current() {
    const { found, value } = this.#recorder.read(this.#path);
    return found ? value : emptyValue(this.#type);
  }

  /** @protected */
  _record(tag, val) {
    this.#recorder.record(this.#path, this.#type, tag, val);
  }

  /** @protected */
  _fail(message) {
    this.#recorder.fail(`${this.#type}${this.#where()}: ${message}`);
  }

  /** @protected A handle of `type` on `key` of this (map) data. */
  _child(key, type) {
    if (typeof key !== 'string') {
      throw new TypeError(`or-map${this.#where()}: a key must be a string, not ${typeof key}`);
    }
    return handleFor(this.#recorder, [...this.#path, key], type);
  }

  #where() {
    return this.#path.length === 0 ? '' : ` at ${JSON.stringify(this.#path)}`;
  }
}

/** A count argument as a u64 BigInt, or `undefined`. */
function toU64(n) {
  if (!isCount(n)) {
    return undefined;
  }
  const big = BigInt(n);
  return big >= 0n && big <= UINT64_MAX ? big : undefined;
}

/** The JSON text of an element or register value, or `undefined` after recording a misuse. */
function jsonArgument(handle, what, value) {
  let text;
  try {
    text = canonical(value);
  } catch (error) {
    handle._fail(`the ${what} has no JSON form: ${error.message}`);
    return undefined;
  }
  if (text === undefined) {
    handle._fail(`the ${what} has no JSON form`);
  }
  return text;
}

class Counter extends CrdtHandle {
  /** The counter's value: a number, or a BigInt beyond 2^53. */
  get value() {
    const cur = this._current();
    return isCount(cur) ? cur : 0;
  }

  /** Adds `n` (a non-negative integer up to 2^64 - 1; default 1). */
  increment(n = 1) {
    this.#count('increment', n);
  }

  /** @protected */
  _decrement(n) {
    this.#count('decrement', n);
  }

  #count(tag, n) {
    const v = toU64(n);
    if (v === undefined) {
      this._fail(`${tag} takes an integer from 0 to 2^64 - 1, not ${stringify(n) ?? String(n)}`);
      return;
    }
    this._record(tag, v);
  }
}

/** A counter that only grows. */
export class GCounter extends Counter {}

/** A counter that goes up and down. */
export class PNCounter extends Counter {
  /** Subtracts `n` (a non-negative integer up to 2^64 - 1; default 1). */
  decrement(n = 1) {
    this._decrement(n);
  }
}

class SetHandle extends CrdtHandle {
  /** The elements, sorted by their canonical JSON text (a copy). */
  get elements() {
    const cur = this._current();
    return Array.isArray(cur) ? copyJson(cur) : [];
  }

  get value() {
    return this.elements;
  }

  /** How many elements the set holds. */
  get size() {
    const cur = this._current();
    return Array.isArray(cur) ? cur.length : 0;
  }

  /** Whether the set holds `element` (compared as canonical JSON). */
  has(element) {
    const text = canonical(element);
    const cur = this._current();
    return text !== undefined && Array.isArray(cur) && cur.some((e) => canonical(e) === text);
  }

  /** Adds `element` (any JSON value). */
  add(element) {
    const text = jsonArgument(this, 'element', element);
    if (text !== undefined) {
      this._record('add', text);
    }
  }

  /** @protected */
  _remove(element) {
    const text = jsonArgument(this, 'element', element);
    if (text !== undefined) {
      this._record('remove', text);
    }
  }
}

/** A set that only grows. */
export class GSet extends SetHandle {}

/** An add-wins set: an add concurrent with a remove of the same element wins. */
export class ORSet extends SetHandle {
  /** Removes `element` (the adds of it this node has seen). */
  remove(element) {
    this._remove(element);
  }

  /** Removes every element this node has seen. */
  clear() {
    this._record('clear');
  }
}

/** A last-writer-wins register; `value` is `null` before the first `set`. */
export class LWWRegister extends CrdtHandle {
  /** Writes `value` (any JSON value); the host stamps it with the command's timestamp. */
  set(value) {
    const text = jsonArgument(this, 'value', value);
    if (text !== undefined) {
      this._record('set', text);
    }
  }
}

/** An enable-wins flag: an enable concurrent with a disable wins. */
export class Flag extends CrdtHandle {
  /** Whether the flag is on. */
  get enabled() {
    return this._current() === true;
  }

  get value() {
    return this.enabled;
  }

  enable() {
    this._record('enable');
  }

  disable() {
    this._record('disable');
  }

  /** Turns the flag off (as `disable`). */
  clear() {
    this._record('clear');
  }
}

/** One vote per node: `vote(b)` is this node's. */
export class Vote extends CrdtHandle {
  get value() {
    const cur = this._current();
    return fits('vote', cur) ? copyJson(cur) : emptyValue('vote');
  }

  /** How many nodes vote for. */
  get votesFor() {
    return Number(this.value.votes_for);
  }

  /** How many nodes have voted. */
  get voters() {
    return Number(this.value.voters);
  }

  /** Whether more than half of the voters vote for. */
  get majority() {
    return this.value.majority === true;
  }

  /** This node's vote (replaces its previous one). */
  vote(inFavour) {
    if (typeof inFavour !== 'boolean') {
      this._fail(`a vote is a boolean, not ${stringify(inFavour) ?? String(inFavour)}`);
      return;
    }
    this._record('vote', inFavour);
  }
}

/**
 * An add-wins map from string keys to crdts of any type. The typed accessors give a handle on
 * a key's data (`map.gCounter('hits').increment()`); the first operation on a key creates it
 * with the handle's type (the operation's `creates`), and maps nest (`map.orMap('a').flag('b')`).
 */
export class ORMap extends CrdtHandle {
  get value() {
    const cur = this._current();
    return isObject(cur) ? copyJson(cur) : {};
  }

  /** The keys, in the host's order (by code point). */
  get keys() {
    const cur = this._current();
    return isObject(cur) ? Object.keys(cur).sort(compareText) : [];
  }

  /** How many keys the map holds. */
  get size() {
    return this.keys.length;
  }

  /** Whether the map holds `key`. */
  has(key) {
    const cur = this._current();
    return isObject(cur) && Object.hasOwn(cur, key);
  }

  /** A handle of `type` (a crdt type's WIT name) on the data at `key`. */
  get(key, type) {
    return this._child(key, type);
  }

  gCounter(key) {
    return this._child(key, 'g-counter');
  }

  pnCounter(key) {
    return this._child(key, 'pn-counter');
  }

  gSet(key) {
    return this._child(key, 'g-set');
  }

  orSet(key) {
    return this._child(key, 'or-set');
  }

  lwwRegister(key) {
    return this._child(key, 'lww-register');
  }

  flag(key) {
    return this._child(key, 'flag');
  }

  orMap(key) {
    return this._child(key, 'or-map');
  }

  vote(key) {
    return this._child(key, 'vote');
  }

  /** Removes `key` (the updates of it this node has seen). */
  delete(key) {
    if (typeof key !== 'string') {
      this._fail(`a key to delete must be a string, not ${typeof key}`);
      return;
    }
    this._record('delete', key);
  }

  /** Removes every key this node has seen. */
  clear() {
    this._record('clear');
  }
}

const CLASSES = {
  'g-counter': GCounter,
  'pn-counter': PNCounter,
  'g-set': GSet,
  'or-set': ORSet,
  'lww-register': LWWRegister,
  flag: Flag,
  'or-map': ORMap,
  vote: Vote,
};

/** The handle of `type` on the data at `path`. */
export function handleFor(recorder, path, type) {
  const Class = Object.hasOwn(CLASSES, type) ? CLASSES[type] : undefined;
  if (Class === undefined) {
    throw new TypeError(`unknown crdt type \`${type}\` (one of ${CRDT_TYPES.join(', ')})`);
  }
  return new Class(recorder, path, type);
}
