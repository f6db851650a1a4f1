/*
 * Unit testing of entities in Node, without building a component: `TestKit` plays the host's
 * part for one entity, running commands through the same export functions a component runs,
 * against an in-memory state.
 *
 * ```js
 * import { test } from 'node:test';
 * import assert from 'node:assert/strict';
 * import { TestKit } from 'cella-sdk/testing';
 * import { entity } from '../src/index.js';
 *
 * test('add replies the new total', () => {
 *   const kit = new TestKit(entity);
 *   assert.equal(kit.handle('add', 5), 5);
 *   assert.throws(() => kit.handle('add', 'five'), { kind: 'bad-request' });
 *   assert.throws(() => kit.handle('reset'), { kind: 'unknown-command', message: 'reset' });
 *   assert.equal(kit.sequence, 1);
 * });
 * ```
 *
 * Topics: `kit.deliver(topic, message)` runs a message of a topic the entity subscribes to
 * through the subscription's command (with `ctx.message` set), `kit.subscriptions` and
 * `kit.eventsTopic` are what the entity declares, `keysOf(subscription, message)` says which
 * entities the host delivers a message to, and `kit.last.effects` records `publish` and
 * `broadcast` effects like the others.
 *
 * CRDT entities: the kit keeps the entity's value as a single replica (see `CrdtReplica`),
 * passes its JSON view to each command and applies the operations the command answers with,
 * as the host does. `kit.value` reads the value, `kit.setValue(json)` feeds one in (e.g. as if
 * other nodes had written it), `kit.last.ops` and `kit.last.consistency` are what the command
 * answered. An operation the host would refuse (a handle of one type on data of another) fails
 * the command with `CommandFailure` of kind `failed`, and nothing is applied:
 *
 * ```js
 * const kit = new TestKit(entity); // crdtEntity({ type: 'or-map', ... })
 * kit.handle('visit', 'home');
 * assert.deepEqual(kit.last.ops, [{ path: ['home'], action: { increment: 1 }, creates: 'g-counter' }]);
 * assert.deepEqual(kit.value, { home: 1 });
 * ```
 *
 * `kit.restart()` drops the state of an ephemeral entity, as a restart of its node does.
 *
 * Replies, events and states come back as the SDK's exact JSON reads them (integers beyond
 * 2^53 as BigInts). An exception that escapes the entity's code propagates out of `handle`
 * unchanged (a component would trap on it).
 */

import { CrdtReplica, ReplicaError, readableOp } from './crdt-replica.js';
import { DEFINITION, glue, isName } from './glue.js';
import { parse, stringify } from './json.js';

export { CrdtReplica, ReplicaError, readableOp };

/** Why a command failed, as the host would report it. */
export class CommandFailure extends Error {
  /**
   * @param {'rejected' | 'unknown-command' | 'bad-request' | 'failed'} kind `failed`: the
   *   entity answered with crdt operations the host refuses (HTTP 500 `entity_failed`)
   * @param {string} message the rejection or bad-request message, the unknown command name, or
   *   why the host refuses the operations
   */
  constructor(kind, message) {
    super(message);
    this.name = 'CommandFailure';
    /** @type {'rejected' | 'unknown-command' | 'bad-request' | 'failed'} */
    this.kind = kind;
  }
}

const MASK64 = (1n << 64n) - 1n;
const DECODER = new TextDecoder();

/** Throws `message` (with both states) unless the state bytes `a` and `b` hold the same JSON. */
function sameState(a, b, message) {
  const [left, right] = [json('state', DECODER.decode(a)), json('state', DECODER.decode(b))];
  if (!sameJson(left, right)) {
    throw new Error(`${message}: ${stringify(left)} != ${stringify(right)}`);
  }
}
const ENCODER = new TextEncoder();

function json(what, text) {
  try {
    return parse(text);
  } catch (error) {
    throw new Error(`the ${what} is not JSON (${error.message}): ${text}`);
  }
}

function rendered(what, result) {
  if (result.tag !== 'ok') {
    throw new Error(`the ${what} does not render: ${result.val}`);
  }
  return json(what, result.val);
}

function call(c) {
  const out = {
    entityType: c.target.entityType,
    key: c.target.key,
    command: c.command,
    payload: json('call payload', c.payload),
  };
  if (c.replyTo !== undefined && c.replyTo !== null) {
    out.replyTo = c.replyTo.command;
    out.correlation = c.replyTo.correlation;
  }
  return out;
}

function effect({ tag, val }) {
  switch (tag) {
    case 'call':
      return { kind: 'call', ...call(val) };
    case 'publish':
      return { kind: 'publish', topic: val.topic, payload: json('publication payload', val.payload) };
    case 'schedule': {
      const timer = {
        kind: 'schedule',
        name: val.name,
        delayMs: Number(val.delayMs),
        command: val.command,
        payload: json('timer payload', val.payload),
      };
      if (val.everyMs !== undefined && val.everyMs !== null) {
        timer.everyMs = Number(val.everyMs);
      }
      return timer;
    }
    case 'cancel':
      return { kind: 'cancel', name: val };
    case 'broadcast':
      return {
        kind: 'broadcast',
        entityType: val.entityType,
        command: val.command,
        payload: json('broadcast payload', val.payload),
      };
    default:
      throw new Error(`unknown effect ${tag}`);
  }
}

/** Resolves the JSON pointer `pointer` (RFC 6901) in `document`: `{found, value}`. */
function resolvePointer(document, pointer) {
  if (pointer === '') {
    return { found: true, value: document };
  }
  let at = document;
  for (const raw of pointer.slice(1).split('/')) {
    const token = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(at)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token) || Number(token) >= at.length) {
        return { found: false };
      }
      at = at[Number(token)];
    } else if (typeof at === 'object' && at !== null && Object.hasOwn(at, token)) {
      at = at[token];
    } else {
      return { found: false };
    }
  }
  return { found: true, value: at };
}

/**
 * The keys of the entities a subscription (as declared: `{topic, command, key}`) delivers
 * `message` (JSON) to, as the host picks them: the fixed key, or the string or number (or the
 * array of them) at the pointer; `[]` when the message has no usable key there (the host does
 * not deliver it).
 * @param {{key: {pointer: string} | {fixed: string}}} subscription
 * @param {unknown} message
 * @returns {string[]}
 */
export function keysOf(subscription, message) {
  const { key } = subscription;
  if ('fixed' in key) {
    return [key.fixed];
  }
  const { found, value } = resolvePointer(message, key.pointer);
  if (!found) {
    return [];
  }
  const keys = [];
  for (const item of Array.isArray(value) ? value : [value]) {
    const k =
      typeof item === 'string' ? item : typeof item === 'number' || typeof item === 'bigint' ? stringify(item) : undefined;
    if (!isName(k)) {
      return [];
    }
    keys.push(k);
  }
  return keys;
}

function sameJson(a, b) {
  return stringify(a) === stringify(b);
}

/**
 * Runs commands against one in-memory entity the way the host does: the state starts empty,
 * each command goes through the entity's export functions (payload decoding, rejections,
 * state and event handling), and whatever it persists becomes the next command's state.
 *
 * For event-sourced entities the kit also folds every persisted event with the `apply` export,
 * as the host does when it rebuilds a state, and checks that the result equals the state the
 * handler returned.
 *
 * The context is deterministic: command ids are `test-command-<n>`, the time is fixed (see
 * `setTime`) and the random seed depends only on `n`.
 *
 * The kit throws a plain `Error` when the entity breaks the contract in a way the host would
 * not accept: a reply that is not JSON, a value entity emitting events, an `apply` that fails
 * or disagrees with the handler's state, or stored bytes that do not render.
 */
export class TestKit {
  /** The default time of commands: 2025-01-01T00:00:00Z. */
  static DEFAULT_TIME_MS = 1_735_689_600_000;

  #definition;
  #glue;
  #entityType;
  #key;
  #timestampMs = TestKit.DEFAULT_TIME_MS;
  #state = undefined;
  #sequence = 0;
  #commandsRun = 0n;
  #events = [];
  #last = undefined;
  #offsets = new Map();
  /** A crdt entity's value, as a single replica. */
  #replica = undefined;

  /**
   * @param {object} entity what `valueEntity` or `eventSourcedEntity` returned
   * @param {{entityType?: string, key?: string}} [address] default `test` / `test-key`
   */
  constructor(entity, { entityType = 'test', key = 'test-key' } = {}) {
    const definition = entity?.[DEFINITION];
    if (definition === undefined) {
      throw new TypeError('TestKit: expected an entity made by valueEntity, eventSourcedEntity or crdtEntity');
    }
    this.#definition = definition;
    if (definition.kind === 'crdt') {
      this.#replica = new CrdtReplica(definition.crdt);
    }
    // The same functions the component exports, without writing escaping exceptions to stderr.
    this.#glue = glue(definition, { logUncaught: false });
    this.#entityType = entityType;
    this.#key = key;
  }

  /** The command names the entity declares. @type {string[]} */
  get commands() {
    return this.#glue.describe().commands.slice();
  }

  /** The entity's kind: `value`, `event-sourced` or `crdt`. */
  get kind() {
    return this.#glue.describe().kind;
  }

  /** Whether the entity's state outlives its node's process: `durable` or `ephemeral`. */
  get durability() {
    return this.#glue.describe().durability;
  }

  /** A crdt entity's crdt type (`undefined` for the other kinds). */
  get crdtType() {
    return this.#glue.describe().crdt;
  }

  /** A crdt entity's value, as the host's JSON view (what its commands receive). */
  get value() {
    this.#requireCrdt('value');
    return this.#replica.value;
  }

  /**
   * Replaces a crdt entity's value with `value`, the JSON view of its type (e.g. as if other
   * nodes had written it). Map entries take their types from the first operation on them.
   */
  setValue(value) {
    this.#requireCrdt('setValue');
    this.#replica = new CrdtReplica(this.#definition.crdt, value);
  }

  /**
   * A restart of the entity's node: an ephemeral entity's state is gone (a crdt entity's is
   * rebuilt from the other nodes', of which the kit has none); a durable one's is kept.
   */
  restart() {
    if (this.durability !== 'ephemeral') {
      return;
    }
    this.#state = undefined;
    this.#sequence = 0;
    if (this.#replica !== undefined) {
      this.#replica = new CrdtReplica(this.#definition.crdt);
    }
  }

  #requireCrdt(what) {
    if (this.#replica === undefined) {
      throw new TypeError(`TestKit.${what}: not a crdt entity (use \`state\`)`);
    }
  }

  /** The snapshot interval the entity declares (0 = the host's default). */
  get snapshotEvery() {
    return this.#glue.describe().snapshotEvery;
  }

  /**
   * The subscriptions the entity declares, in order: `{topic, command, key}` with `key`
   * `{pointer}` or `{fixed}`.
   */
  get subscriptions() {
    return this.#definition.subscriptions.map(({ topic, command, key }) => ({ topic, command, key: { ...key } }));
  }

  /** The topic the entity's events are published to, or `undefined`. */
  get eventsTopic() {
    return this.#definition.eventsTopic;
  }

  /**
   * Delivers `message` (any JSON value) of `topic` to this entity as the host does: runs the
   * command of the entity's subscription to `topic` with the message as payload and
   * `ctx.message` set to the topic and `offset` (by default one more than the last offset of
   * that topic delivered by this kit, starting at 1), and returns the reply. `command` picks
   * the subscription when there are several to the topic. Whether the message's key names this
   * entity is not checked (see `keysOf`). Throws a `TypeError` when the entity has no such
   * subscription, and a `CommandFailure` as `handle` does.
   * @param {string} topic
   * @param {unknown} message
   * @param {{offset?: number, command?: string}} [options]
   */
  deliver(topic, message, { offset, command } = {}) {
    const chosen = this.#definition.subscriptions.filter(
      (s) => s.topic === topic && (command === undefined || s.command === command),
    );
    if (chosen.length === 0) {
      throw new TypeError(`TestKit.deliver: the entity has no subscription to topic \`${topic}\``);
    }
    if (new Set(chosen.map((s) => s.command)).size > 1) {
      throw new TypeError(`TestKit.deliver: the entity subscribes to \`${topic}\` more than once: give { command }`);
    }
    const at = offset ?? (this.#offsets.get(topic) ?? 0) + 1;
    this.#offsets.set(topic, at);
    return this.handle(chosen[0].command, message, { message: { topic, offset: at } });
  }

  /** Sets the time the next commands see (`ctx.timestampMs`). */
  setTime(timestampMs) {
    this.#timestampMs = timestampMs;
  }

  /**
   * Runs `command` with `payload` (any JSON value; BigInts are exact) and returns the reply.
   * Throws a `CommandFailure` if the command failed, in which case nothing changes.
   *
   * `{ correlation }` runs the command as the reply route of a call (`ctx.correlation`; the
   * payload is then the outcome, `{ ok: reply }` or `{ error: { code, message } }`);
   * `{ timer }` as fired by that timer (`ctx.timer`); `{ message: { topic, offset } }` as the
   * delivery of a topic message (`ctx.message`; `deliver` is the shorthand).
   * @param {string} command
   * @param {unknown} [payload] default `null`
   * @param {{correlation?: string, timer?: string, message?: {topic: string, offset: number}}} [options]
   */
  handle(command, payload = null, options = {}) {
    const text = stringify(payload);
    if (text === undefined) {
      throw new TypeError('TestKit.handle: the payload has no JSON form');
    }
    return this.handleJson(command, text, options);
  }

  /**
   * Runs `command` with the payload given as JSON text (e.g. `'1.5'`, `''` for an empty body).
   * @param {string} command
   * @param {string} payloadText
   * @param {{correlation?: string, timer?: string, message?: {topic: string, offset: number}}} [options] as for `handle`
   */
  handleJson(command, payloadText, { correlation, timer, message } = {}) {
    this.#last = undefined;
    this.#commandsRun += 1n;
    const n = this.#commandsRun;
    const context = {
      entityType: this.#entityType,
      key: this.#key,
      commandId: `test-command-${n}`,
      command,
      timestampMs: BigInt(this.#timestampMs),
      randomSeed: (n * 0x9e3779b97f4a7c15n) & MASK64,
      sequence: BigInt(this.#sequence),
      correlation: correlation ?? undefined,
      timer: timer ?? undefined,
      message:
        message === undefined || message === null
          ? undefined
          : { topic: message.topic, offset: BigInt(message.offset) },
    };
    const stateBytes = this.#replica !== undefined ? ENCODER.encode(this.#replica.text) : this.#state?.slice();
    const result = this.#glue.handle(context, stateBytes, payloadText);
    if (result.tag === 'err') {
      throw new CommandFailure(result.val.tag, result.val.val);
    }
    const outcome = result.val;
    const reply = json('reply', outcome.reply);
    const events = [];
    let persisted;
    if (this.kind === 'crdt') {
      if (outcome.events.length > 0 || outcome.state !== undefined) {
        throw new Error('a crdt entity returned events or a state');
      }
      try {
        this.#replica.apply(outcome.crdtOps);
      } catch (error) {
        if (error instanceof ReplicaError) {
          throw new CommandFailure('failed', error.message);
        }
        throw error;
      }
      persisted = outcome.crdtOps.length > 0;
    } else if (this.kind === 'value') {
      if (outcome.events.length > 0) {
        throw new Error('a value entity returned events');
      }
      persisted = outcome.state !== undefined;
      if (persisted) {
        this.#state = outcome.state;
      }
    } else if (outcome.events.length === 0) {
      persisted = false;
    } else {
      let folded = this.#state;
      for (const event of outcome.events) {
        events.push(rendered('event', this.#glue.renderEvent(event)));
        const applied = this.#glue.apply(folded, event);
        if (applied.tag !== 'ok') {
          throw new Error(`\`apply\` failed on an event the handler emitted: ${applied.val}`);
        }
        folded = applied.val;
      }
      if (outcome.state !== undefined) {
        sameState(
          outcome.state,
          folded,
          'the state returned by `handle` differs from the fold of its events with `apply`',
        );
      }
      const batch = this.#glue.applyAll(this.#state, outcome.events);
      if (batch.tag !== 'ok') {
        throw new Error(`\`applyAll\` failed on the events the handler emitted: ${batch.val}`);
      }
      sameState(batch.val, folded, '`applyAll` over the events differs from `apply` per event');
      this.#state = outcome.state ?? folded;
      persisted = true;
    }
    if (persisted) {
      this.#sequence += 1;
    }
    this.#events.push(...events);
    this.#last = {
      reply,
      events,
      persisted,
      effects: outcome.effects.map(effect),
      forward: outcome.forward === undefined ? undefined : call(outcome.forward),
      ops: outcome.crdtOps.map(readableOp),
      consistency: outcome.consistency,
    };
    return reply;
  }

  /**
   * What the last successful command produced: `{reply, events, persisted, effects, forward,
   * ops, consistency}`; `undefined` if it failed or none ran yet. `ops` are a crdt entity's
   * operations, `{path, action, creates}` (see `readableOp`), and `consistency` the one its
   * command asked for (`[]` and `'local'` for the other kinds). Effects are
   * `{kind: 'call', entityType, key, command, payload}` (plus `replyTo` and `correlation` for a
   * call with a reply route), `{kind: 'publish', topic, payload}`,
   * `{kind: 'schedule', name, delayMs, command, payload}` (plus `everyMs` for a repeating timer),
   * `{kind: 'cancel', name}` or `{kind: 'broadcast', entityType, command, payload}`.
   */
  get last() {
    return this.#last;
  }

  /** The journal sequence number: how many commands persisted something. */
  get sequence() {
    return this.#sequence;
  }

  /** Event-sourced: every event persisted so far, as JSON, in order. */
  get events() {
    return this.#events.slice();
  }

  /** The stored state as JSON (rendered by the entity), or `undefined` if nothing is stored. */
  get stateJson() {
    if (this.#replica !== undefined) {
      return this.#replica.value;
    }
    return this.#state === undefined
      ? undefined
      : rendered('state', this.#glue.renderState(this.#state.slice()));
  }

  /** The state as the entity's handlers see it (decoded with `stateSchema`; initial if new). */
  get state() {
    if (this.#replica !== undefined) {
      return this.#replica.value;
    }
    const text = this.#state === undefined ? this.#definition.initialText : DECODER.decode(this.#state);
    const value = parse(text);
    return this.#definition.stateSchema === undefined ? value : this.#definition.stateSchema(value, '');
  }

  /** Replaces the stored state, e.g. to start a test from a given state (crdt: `setValue`). */
  setState(state) {
    if (this.#replica !== undefined) {
      this.setValue(state);
      return;
    }
    const text = stringify(state);
    if (text === undefined) {
      throw new TypeError('TestKit.setState: the state has no JSON form');
    }
    this.#state = ENCODER.encode(text);
  }
}
