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

import { canonical, compareText, copyJson, parse, setKey, stringify } from './json.js';
import { UINT64_MAX } from './schema.js';

/** The crdt types, by their WIT names. */
export const CRDT_TYPES = Object.freeze([
  'g-counter',
  'pn-counter',
  'g-set',
  'or-set',
  'lww-register',
  'flag',
  'or-map',
  'vote',
]);

/** The actions each crdt type takes, by their WIT names. */
export const CRDT_ACTIONS = Object.freeze({
  'g-counter': Object.freeze(['increment']),
  'pn-counter': Object.freeze(['increment', 'decrement']),
  'g-set': Object.freeze(['add']),
  'or-set': Object.freeze(['add', 'remove', 'clear']),
  'lww-register': Object.freeze(['set']),
  flag: Object.freeze(['enable', 'disable', 'clear']),
  'or-map': Object.freeze(['delete', 'clear']),
  vote: Object.freeze(['vote']),
});

/** How many nodes must hold a command's change before its reply (weakest first). */
export const CONSISTENCIES = Object.freeze(['local', 'majority', 'all']);

const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value) =>
  typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value));

/** The value of new data of `type`, as the host's JSON view shows it. */
export function emptyValue(type) {
  switch (type) {
    case 'g-counter':
    case 'pn-counter':
      return 0;
    case 'g-set':
    case 'or-set':
      return [];
    case 'lww-register':
      return null;
    case 'flag':
      return false;
    case 'or-map':
      return {};
    case 'vote':
      return { votes_for: 0, voters: 0, majority: false };
    default:
      throw new TypeError(`unknown crdt type \`${type}\` (one of ${CRDT_TYPES.join(', ')})`);
  }
}

/** Whether `value` has the shape of `type`'s JSON view. */
export function fits(type, value) {
  switch (type) {
    case 'g-counter':
    case 'pn-counter':
      return isCount(value);
    case 'g-set':
    case 'or-set':
      return Array.isArray(value);
    case 'flag':
      return typeof value === 'boolean';
    case 'or-map':
      return isObject(value);
    case 'vote':
      return isObject(value) && isCount(value.votes_for) && isCount(value.voters);
    default:
      return true;
  }
}

/** `a + delta` (a count, a BigInt delta): a number when safe, else a BigInt. */
function addCount(a, delta) {
  const sum = BigInt(a) + delta;
  return sum >= BigInt(Number.MIN_SAFE_INTEGER) && sum <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(sum) : sum;
}

/** `elements` (sorted by canonical text) with `element` in its place, if not already there. */
export function insertSorted(elements, element) {
  const text = canonical(element);
  const at = elements.findIndex((e) => compareText(canonical(e), text) >= 0);
  if (at >= 0 && canonical(elements[at]) === text) {
    return elements;
  }
  const out = elements.slice();
  out.splice(at < 0 ? out.length : at, 0, element);
  return out;
}

/**
 * How an action changes the view of the data it applies to, for this replica: `(current) =>
 * next`, `current` being `undefined` for data the operation creates, and `next` `undefined`
 * when the view cannot show the change.
 */
function localStep(tag, val, type) {
  switch (tag) {
    case 'increment':
      return (cur) => addCount(cur ?? 0, val);
    case 'decrement':
      return (cur) => addCount(cur ?? 0, -val);
    case 'add':
      return (cur) => insertSorted(cur ?? [], parse(val));
    case 'remove':
      return (cur) => (cur ?? []).filter((e) => canonical(e) !== val);
    case 'set':
      return () => parse(val);
    case 'enable':
      return () => true;
    case 'disable':
      return () => false;
    case 'vote':
      return (cur) =>
        cur === undefined || Number(cur.voters) === 0
          ? { votes_for: val ? 1 : 0, voters: 1, majority: val }
          : undefined;
    case 'delete':
      return (cur) => {
        const next = copyJson(cur ?? {});
        delete next[val];
        return next;
      };
    case 'clear':
      return (cur) => (cur === undefined && type === undefined ? undefined : emptyValue(type));
    default:
      return () => undefined;
  }
}

/**
 * The operations of one command on a crdt entity and its working view.
 */
export class CrdtRecorder {
  #ops = [];
  #error = undefined;
  #view;
  #type;

  /**
   * @param {string} type the entity's crdt type
   * @param {unknown} view its value as the host's JSON view
   */
  constructor(type, view) {
    this.#type = type;
    this.#view = view;
  }

  /** The entity's crdt type. */
  get type() {
    return this.#type;
  }

  /** The data at `path` in the working view: `{found, value}` (not a copy). */
  read(path) {
    let at = this.#view;
    for (const key of path) {
      if (!isObject(at) || !Object.hasOwn(at, key)) {
        return { found: false, value: undefined };
      }
      at = at[key];
    }
    return { found: true, value: at };
  }

  /** Records a misuse; the first one is reported. */
  fail(message) {
    this.#error ??= message;
  }

  /** The first misuse, if any. */
  get error() {
    return this.#error;
  }

  /** The recorded operations, as the WIT's `crdt-op` records. */
  get ops() {
    return this.#ops.slice();
  }

  /**
   * Records `action` (`tag`, with `val` for the actions that carry one) on the data at `path`,
   * of `type` (which the data gets if the operation creates it), and applies it to the view.
   */
  record(path, type, tag, val) {
    const action = val === undefined ? { tag } : { tag, val };
    this.#ops.push({ path: path.slice(), action, creates: path.length > 0 ? type : undefined });
    const step = localStep(tag, val, path.length > 0 ? type : this.#type);
    const change = (cur) => {
      if (cur !== undefined && !fits(type, cur)) {
        return undefined;
      }
      return step(cur);
    };
    if (path.length === 0) {
      this.#view = change(this.#view) ?? this.#view;
      return;
    }
    let at = this.#view;
    for (const key of path.slice(0, -1)) {
      if (!isObject(at)) {
        return;
      }
      if (!Object.hasOwn(at, key)) {
        setKey(at, key, {});
      }
      at = at[key];
    }
    const last = path[path.length - 1];
    if (!isObject(at)) {
      return;
    }
    const next = change(Object.hasOwn(at, last) ? at[last] : undefined);
    if (next !== undefined) {
      setKey(at, last, next);
    }
  }
}

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
