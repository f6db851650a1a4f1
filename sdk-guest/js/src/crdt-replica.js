/*
 * A single-replica model of a crdt entity's data, for the test kit: it applies the operations
 * a command answers with the way the host applies them as one node's replica, so that tests
 * can chain commands and read the value back as the host's JSON view.
 *
 * As one replica: counters add up, sets keep their elements sorted by canonical JSON text, a
 * register holds the last value set, a flag the last enable or disable, a map's keys come from
 * the operations on them (the first one fixes a key's type: its `creates`, else the action's:
 * increment or decrement a pn-counter, add or remove an or-set, set a register, enable or
 * disable a flag, vote a vote, a longer path or delete a map) and a vote counts this replica's
 * vote. As in the host, a deleted map key's data is kept unread: writing the key again goes on
 * from it (a counter does not restart from zero), and a path has at most 32 keys.
 *
 * A value fed in as JSON (`new CrdtReplica(type, value)`) has no types below its top: each map
 * entry takes the type of the first operation on it that fits its shape, and a fed vote's
 * counts are the other nodes' votes. An operation that does not fit the data's type (a `flag`
 * handle on a key holding a counter, a decrement of a g-counter) makes `apply` throw a
 * `ReplicaError`, and none of the command's operations is applied: what the host does.
 */

import { CRDT_ACTIONS as ACTIONS, CRDT_TYPES, emptyValue, fits } from './crdt.js';
import { canonical, compareText, copyJson, parse, stringify } from './json.js';

/** An operation the host would refuse: the command fails and nothing is applied. */
export class ReplicaError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ReplicaError';
  }
}

/** The type an action gives data it creates without a `creates`. */
const CREATED_BY = {
  increment: 'pn-counter',
  decrement: 'pn-counter',
  add: 'or-set',
  remove: 'or-set',
  set: 'lww-register',
  enable: 'flag',
  disable: 'flag',
  vote: 'vote',
  delete: 'or-map',
};

/** `type` with its article: `a g-counter`, `an or-set`. */
const named = (type) => `${type.startsWith('or-') ? 'an' : 'a'} ${type}`;

const toCount = (n) => (Number.isSafeInteger(Number(n)) ? Number(n) : n);

/** New, empty data of `type`. */
function empty(type) {
  switch (type) {
    case 'g-counter':
    case 'pn-counter':
      return { type, n: 0n };
    case 'g-set':
    case 'or-set':
      return { type, elements: new Map() };
    case 'lww-register':
      return { type, set: false, value: null };
    case 'flag':
      return { type, on: false };
    case 'or-map':
      return { type, keys: new Set(), values: new Map() };
    case 'vote':
      return { type, othersFor: 0, othersVoters: 0, own: undefined };
    default:
      throw new TypeError(`unknown crdt type \`${type}\` (one of ${CRDT_TYPES.join(', ')})`);
  }
}

/** Data of `type` from its JSON view; map entries stay untyped until an operation types them. */
function fromJson(type, json, where) {
  if (!fits(type, json)) {
    throw new TypeError(`${where} is not the JSON view of ${named(type)}: ${stringify(json)}`);
  }
  const node = empty(type);
  switch (type) {
    case 'g-counter':
    case 'pn-counter':
      node.n = BigInt(json);
      break;
    case 'g-set':
    case 'or-set':
      for (const element of json) {
        node.elements.set(canonical(element), copyJson(element));
      }
      break;
    case 'lww-register':
      node.set = json !== null;
      node.value = copyJson(json);
      break;
    case 'flag':
      node.on = json;
      break;
    case 'or-map':
      for (const key of Object.keys(json)) {
        node.keys.add(key);
        node.values.set(key, { type: undefined, json: copyJson(json[key]) });
      }
      break;
    case 'vote':
      node.othersFor = Number(json.votes_for);
      node.othersVoters = Number(json.voters);
      break;
    default:
      break;
  }
  return node;
}

/** The host's JSON view of the data. */
function view(node) {
  switch (node.type) {
    case undefined:
      return copyJson(node.json);
    case 'g-counter':
    case 'pn-counter':
      return toCount(node.n);
    case 'g-set':
    case 'or-set':
      return [...node.elements.keys()].sort(compareText).map((text) => copyJson(node.elements.get(text)));
    case 'lww-register':
      return copyJson(node.value);
    case 'flag':
      return node.on;
    case 'or-map': {
      const out = {};
      for (const key of [...node.keys].sort(compareText)) {
        Object.defineProperty(out, key, {
          value: view(node.values.get(key)),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return out;
    }
    case 'vote': {
      const votesFor = node.othersFor + (node.own === true ? 1 : 0);
      const voters = node.othersVoters + (node.own === undefined ? 0 : 1);
      return { votes_for: votesFor, voters, majority: votesFor * 2 > voters };
    }
    default:
      throw new TypeError(`unknown crdt type \`${node.type}\``);
  }
}

/** A deep copy of the data. */
function clone(node) {
  switch (node.type) {
    case undefined:
      return { type: undefined, json: copyJson(node.json) };
    case 'g-set':
    case 'or-set':
      return { type: node.type, elements: new Map(node.elements) };
    case 'or-map':
      return {
        type: node.type,
        keys: new Set(node.keys),
        values: new Map([...node.values].map(([key, value]) => [key, clone(value)])),
      };
    default:
      return { ...node };
  }
}

/** The WIT action as text, for messages. */
function actionName(action) {
  return action.val === undefined ? `\`${action.tag}\`` : `\`${action.tag}(${stringify(action.val)})\``;
}

/**
 * `node` typed: an untyped (fed) node takes the first type, `preferred` first, that reads its
 * shape and takes the action `tag` (else the first that reads its shape).
 */
function typed(node, tag, preferred, where) {
  if (node.type !== undefined) {
    return node;
  }
  const readers = [...preferred, ...CRDT_TYPES].filter((t) => t !== undefined && fits(t, node.json));
  const type = readers.find((t) => ACTIONS[t].includes(tag)) ?? readers[0];
  return fromJson(type, node.json, where);
}

/** Applies `action` to `node` (of a type that takes it). */
function act(node, { tag, val }, where) {
  if (!ACTIONS[node.type].includes(tag)) {
    throw new ReplicaError(
      `${where} is ${named(node.type)}, which does not take ${actionName({ tag, val })} ` +
        `(it takes ${ACTIONS[node.type].join(', ')})`,
    );
  }
  switch (tag) {
    case 'increment':
      node.n += BigInt(val);
      break;
    case 'decrement':
      node.n -= BigInt(val);
      break;
    case 'add': {
      const element = parse(val);
      node.elements.set(canonical(element), element);
      break;
    }
    case 'remove':
      node.elements.delete(canonical(parse(val)));
      break;
    case 'set':
      node.set = true;
      node.value = parse(val);
      break;
    case 'enable':
      node.on = true;
      break;
    case 'disable':
      node.on = false;
      break;
    case 'vote':
      node.own = val;
      break;
    case 'delete':
      node.keys.delete(val);
      break;
    case 'clear':
      if (node.type === 'flag') {
        node.on = false;
      } else if (node.type === 'or-set') {
        node.elements.clear();
      } else {
        node.keys.clear();
      }
      break;
    default:
      break;
  }
}

/** How deeply the host nests maps: an operation's path has at most this many keys. */
export const MAX_PATH = 32;

/** Applies one WIT `crdt-op` to `root`. */
function applyOp(root, op) {
  const { path, action, creates } = op;
  if (path.length > MAX_PATH) {
    throw new ReplicaError(`an operation's path is ${path.length} keys deep (at most ${MAX_PATH})`);
  }
  let node = root;
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    const where = `the data at ${JSON.stringify(path.slice(0, i + 1))}`;
    if (node.type !== 'or-map') {
      throw new ReplicaError(`${where}: ${JSON.stringify(path.slice(0, i))} is ${named(node.type)}, not an or-map`);
    }
    const last = i === path.length - 1;
    let child = node.values.get(key);
    if (child === undefined) {
      const type = last ? (creates ?? CREATED_BY[action.tag]) : 'or-map';
      if (type === undefined) {
        // `clear` of data that was never written, with no type to create: nothing to do.
        return;
      }
      child = empty(type);
    } else if (last) {
      child = typed(child, action.tag, [creates, CREATED_BY[action.tag]], where);
    } else if (child.type === undefined && fits('or-map', child.json)) {
      child = fromJson('or-map', child.json, where);
    } else if (child.type === undefined) {
      throw new ReplicaError(`${where} holds ${stringify(child.json)}, not an or-map`);
    }
    node.values.set(key, child);
    node.keys.add(key);
    node = child;
  }
  act(node, action, path.length === 0 ? 'the entity' : `the data at ${JSON.stringify(path)}`);
}

/** One crdt entity's data, as a single replica. */
export class CrdtReplica {
  #type;
  #root;

  /**
   * @param {string} type the entity's crdt type
   * @param {unknown} [value] its value as the host's JSON view (default: the type's empty value)
   */
  constructor(type, value = undefined) {
    this.#type = type;
    this.#root = value === undefined ? empty(type) : fromJson(type, value, 'the value');
  }

  /** The entity's crdt type. */
  get type() {
    return this.#type;
  }

  /** The value as the host's JSON view (what a command receives). */
  get value() {
    return view(this.#root);
  }

  /** The value's JSON text, as the host passes it to a command. */
  get text() {
    return stringify(this.value) ?? stringify(emptyValue(this.#type));
  }

  /**
   * Applies a command's operations (WIT `crdt-op` records) in order, all or none: throws a
   * `ReplicaError` if one does not fit, leaving the value as it was.
   */
  apply(ops) {
    const next = clone(this.#root);
    for (const op of ops) {
      applyOp(next, op);
    }
    this.#root = next;
  }
}

/**
 * A WIT `crdt-op` as the test kit shows it: `{path, action, creates}` with the action in the
 * TCK's JSON form (`{increment: 5}`, `{add: element}`, `{set: value}`, `{vote: true}`,
 * `{delete: key}`, `'enable'`, `'disable'`, `'clear'`) and `creates` a type or `null`.
 */
export function readableOp({ path, action, creates }) {
  let readable;
  switch (action.tag) {
    case 'increment':
    case 'decrement':
      readable = { [action.tag]: toCount(action.val) };
      break;
    case 'add':
    case 'remove':
    case 'set':
      readable = { [action.tag]: parse(action.val) };
      break;
    case 'vote':
    case 'delete':
      readable = { [action.tag]: action.val };
      break;
    default:
      readable = action.tag;
  }
  return { path: path.slice(), action: readable, creates: creates ?? null };
}
