/*
 * The model of CRDT entities that the typed handles (`crdt.js`) and the test kit's replica
 * (`crdt-replica.js`) share: the crdt types, the actions each takes and the consistencies, by
 * their WIT names; a type's empty value and whether a value has its shape, in the host's JSON
 * view; and `CrdtRecorder`, one command's recorded operations with the working copy of the
 * view they are applied to as this replica sees them.
 */

import { canonical, compareText, copyJson, parse, setKey } from './json.js';

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

export const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);
export const isCount = (value) =>
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

