/*
 * The handler's view of the world: `Context` (the journaled, host-chosen facts of a command,
 * the effects it asks for and the working state of a value entity), `EventContext` (a
 * `Context` that also emits events) and `CrdtContext` (a crdt entity's data handle and the
 * consistency its command asks for).
 *
 * Misuse of the context (a second forward, a payload with no JSON form) does not throw: it is
 * recorded, the handler goes on, and the command then fails with a message starting with
 * `entity error:` (unless the handler rejects it first). This is what the Rust SDK does.
 */

import { CONSISTENCIES } from './crdt.js';
import { stringify } from './json.js';
import { UINT64_MAX } from './schema.js';

const MASK64 = (1n << 64n) - 1n;

/** `value` as a wire `u64`, or `undefined` if it is not an integer in range. */
function toU64(value) {
  let n;
  if (typeof value === 'bigint') {
    n = value;
  } else if (typeof value === 'number' && Number.isInteger(value)) {
    n = BigInt(value);
  } else {
    return undefined;
  }
  return n >= 0n && n <= UINT64_MAX ? n : undefined;
}

/**
 * Everything a handler may know beyond its state and payload, and the effects it asks for.
 *
 * All values are chosen by the host and journaled with the command, so a replay sees the same
 * ones: use `timestampMs` instead of `Date.now()` and `random()` instead of `Math.random()`
 * (the component has no real clock or randomness).
 *
 * Effects (`call`, `publish`, `broadcast`, `schedule`, `cancel`) run after the command's change
 * is durable, and only if the command succeeds; the host carries each out exactly once.
 * `forward` hands the command on to another entity.
 */
export class Context {
  /** The entity's type (the module name). @type {string} */
  entityType;
  /** The entity's key. @type {string} */
  key;
  /** The command's unique id, stable across replays and retries. @type {string} */
  commandId;
  /** The command's name. @type {string} */
  command;
  /** The command's time chosen by the host, milliseconds since the Unix epoch. @type {number} */
  timestampMs;
  /** The entity's journal sequence number before this command (0 when new). @type {number} */
  sequence;
  /** The journaled seed behind `random()` and `randomU64()`, a u64. @type {bigint} */
  randomSeed;
  /**
   * The correlation of the call this command answers, when the command is the reply route of
   * a `call` (its payload is then the outcome: see `schema.callReply`); else `null`.
   * @type {string | null}
   */
  correlation;
  /** The name of the timer that fired this command; else `null`. @type {string | null} */
  timer;
  /**
   * Where the message this command delivers comes from, when the command is the subscriber of
   * a topic (see the definition's `subscriptions`; the payload is then the message): its
   * `topic` and its `offset` there (1 for the first message of the topic); else `null`.
   * @type {{topic: string, offset: number} | null}
   */
  message;

  #rng;
  #effects = [];
  #forward = undefined;
  #error = undefined;
  /** @protected */
  _state;

  /**
   * @param {object} wit the WIT `context` record (u64 fields as BigInts)
   * @param {unknown} state the working state
   */
  constructor(wit, state) {
    this.entityType = wit.entityType;
    this.key = wit.key;
    this.commandId = wit.commandId;
    this.command = wit.command;
    this.timestampMs = Number(wit.timestampMs);
    this.sequence = Number(wit.sequence);
    this.randomSeed = BigInt.asUintN(64, BigInt(wit.randomSeed));
    this.correlation = wit.correlation ?? null;
    this.timer = wit.timer ?? null;
    this.message =
      wit.message === undefined || wit.message === null
        ? null
        : Object.freeze({ topic: wit.message.topic, offset: Number(wit.message.offset) });
    this.#rng = this.randomSeed;
    this._state = state;
  }

  /**
   * The next number of a deterministic pseudo-random sequence (splitmix64, as in the Rust
   * SDK) seeded by the journaled seed: a u64 as a `BigInt`.
   * @returns {bigint}
   */
  randomU64() {
    this.#rng = (this.#rng + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.#rng;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }

  /**
   * A deterministic pseudo-random number in [0, 1), like `Math.random()`: the top 53 bits of
   * `randomU64()`.
   * @returns {number}
   */
  random() {
    return Number(this.randomU64() >> 11n) / 2 ** 53;
  }

  /**
   * Sends `command` with `payload` to the entity `entityType`/`key` after this command commits;
   * the host delivers it exactly once.
   *
   * Without options the call is fire-and-forget: its reply is not seen by this entity. With
   * `{ replyTo: 'credited', correlation: 't1' }` its outcome comes back to this entity as the
   * command `credited`, with `ctx.correlation === 't1'` and the outcome as payload:
   * `{"ok": <reply>}` or `{"error": {"code": C, "message": M}}` (a rejection or failure of the
   * call comes back too, as data; decode it with `schema.callReply()`). `correlation` defaults
   * to `''`.
   * @param {string} entityType
   * @param {string} key
   * @param {string} command
   * @param {unknown} [payload]
   * @param {{replyTo?: string, correlation?: string}} [options]
   */
  call(entityType, key, command, payload = null, options = undefined) {
    const call = this.#makeCall('call', entityType, key, command, payload);
    const replyTo = this.#replyRoute(options);
    if (call !== undefined && replyTo !== false) {
      if (replyTo !== undefined) {
        call.replyTo = replyTo;
      }
      this.#effects.push({ tag: 'call', val: call });
    }
  }

  /** The reply route of `call`'s options: `undefined` for none, `false` after a misuse. */
  #replyRoute(options) {
    if (options === undefined || options === null) {
      return undefined;
    }
    if (typeof options !== 'object') {
      this.#fail(`call: the options must be an object ({ replyTo, correlation }), not ${typeof options}`);
      return false;
    }
    const { replyTo, correlation } = options;
    if (replyTo === undefined || replyTo === null) {
      if (correlation !== undefined && correlation !== null && correlation !== '') {
        this.#fail('call: a `correlation` needs a `replyTo` command');
        return false;
      }
      return undefined;
    }
    const route = { command: replyTo, correlation: correlation ?? '' };
    if (!this.#strings('call', { replyTo: route.command, correlation: route.correlation })) {
      return false;
    }
    return route;
  }

  /**
   * Publishes `payload` to `topic` after this command commits: the host appends it to the
   * topic's durable log exactly once, from where it reaches the topic's subscribers and
   * followers.
   */
  publish(topic, payload = null) {
    if (!this.#strings('publish', { topic })) {
      return;
    }
    const text = this.#payload(`publication to \`${topic}\``, payload);
    if (text !== undefined) {
      this.#effects.push({ tag: 'publish', val: { topic, payload: text } });
    }
  }

  /**
   * Sends `command` with `payload` to every entity of `entityType` that exists (has state or
   * events) when the host carries it out, after this command commits: each receives it exactly
   * once, across all partitions and nodes. Replies are not seen.
   * @param {string} entityType
   * @param {string} command
   * @param {unknown} [payload]
   */
  broadcast(entityType, command, payload = null) {
    if (!this.#strings('broadcast', { entityType, command })) {
      return;
    }
    const text = this.#payload(`broadcast of \`${command}\` to ${entityType}`, payload);
    if (text !== undefined) {
      this.#effects.push({ tag: 'broadcast', val: { entityType, command, payload: text } });
    }
  }

  /**
   * Sends `command` with `payload` to this same entity `delayMs` milliseconds after this
   * command commits, and then every `everyMs` milliseconds until cancelled when
   * `{ everyMs }` is given. `name` identifies the timer: a timer of the same name replaces it,
   * `cancel(name)` cancels it, and the command it fires sees it as `ctx.timer`. Timers are
   * durable.
   * @param {string} name
   * @param {number | bigint} delayMs
   * @param {string} command
   * @param {unknown} [payload]
   * @param {{everyMs?: number | bigint}} [options]
   */
  schedule(name, delayMs, command, payload = null, options = undefined) {
    if (!this.#strings('schedule', { name, command })) {
      return;
    }
    const delay = toU64(delayMs);
    if (delay === undefined) {
      this.#fail(`schedule: the delay of timer \`${name}\` is not a whole number of milliseconds`);
      return;
    }
    if (options !== undefined && options !== null && typeof options !== 'object') {
      this.#fail(`schedule: the options must be an object ({ everyMs }), not ${typeof options}`);
      return;
    }
    let every;
    if (options?.everyMs !== undefined && options?.everyMs !== null) {
      every = toU64(options.everyMs);
      if (every === undefined) {
        this.#fail(`schedule: the period of timer \`${name}\` is not a whole number of milliseconds`);
        return;
      }
    }
    const text = this.#payload(`timer \`${name}\``, payload);
    if (text !== undefined) {
      const timer = { name, delayMs: delay, command, payload: text };
      if (every !== undefined) {
        timer.everyMs = every;
      }
      this.#effects.push({ tag: 'schedule', val: timer });
    }
  }

  /**
   * Cancels this entity's timer `name` after this command commits (nothing happens if there is
   * none).
   * @param {string} name
   */
  cancel(name) {
    if (this.#strings('cancel', { name })) {
      this.#effects.push({ tag: 'cancel', val: name });
    }
  }

  /**
   * Hands this command on to the entity `entityType`/`key` as `command` with `payload`: its
   * reply becomes this command's reply (the handler's own reply is ignored). At most once per
   * command; the changes of this command are still persisted.
   */
  forward(entityType, key, command, payload = null) {
    if (this.#forward !== undefined) {
      this.#fail('forward called more than once');
      return;
    }
    this.#forward = this.#makeCall('forward', entityType, key, command, payload) ?? null;
  }

  #makeCall(what, entityType, key, command, payload) {
    if (!this.#strings(what, { entityType, key, command })) {
      return undefined;
    }
    const text = this.#payload(`command \`${command}\` to ${entityType}/${key}`, payload);
    if (text === undefined) {
      return undefined;
    }
    return { target: { entityType, key }, command, payload: text };
  }

  #strings(what, args) {
    for (const [name, value] of Object.entries(args)) {
      if (typeof value !== 'string') {
        this.#fail(`${what}: \`${name}\` must be a string, not ${typeof value}`);
        return false;
      }
    }
    return true;
  }

  #payload(what, payload) {
    let text;
    try {
      text = stringify(payload === undefined ? null : payload);
    } catch (error) {
      this.#fail(`cannot serialize the payload of the ${what}: ${error.message}`);
      return undefined;
    }
    if (text === undefined) {
      this.#fail(`cannot serialize the payload of the ${what}: it has no JSON form`);
    }
    return text;
  }

  /**
   * Records a misuse of the context; the first one is the one reported.
   * @protected
   */
  _fail(message) {
    this.#fail(message);
  }

  #fail(message) {
    this.#error ??= message;
  }

  /**
   * The requested effects and forward, or the first misuse (`error`).
   * @internal
   */
  _finish() {
    return {
      error: this.#error,
      effects: this.#effects,
      forward: this.#forward ?? undefined,
    };
  }
}

/**
 * The context of a value entity's handler. `state` is the working state: the handler may mutate
 * the object it was given, or replace it by assigning `ctx.state`.
 */
export class ValueContext extends Context {
  /** The working state. */
  get state() {
    return this._state;
  }

  set state(state) {
    this._state = state;
  }
}

/**
 * The context of an event-sourced handler: everything a `Context` offers, plus `emit`.
 *
 * `emit(event)` applies the event to the working state at once (through the entity's `apply`,
 * with the event as it will be read back from the journal), so the rest of the handler sees
 * its effect in `ctx.state`. The events are persisted in order if the handler succeeds, and
 * discarded if it rejects.
 */
export class EventContext extends Context {
  #events = [];
  #emitted = [];
  #fold;

  /**
   * @param {object} wit the WIT `context` record
   * @param {unknown} state the state before the command
   * @param {(state: unknown, eventText: string) => {state: unknown, event: unknown} | string} fold
   *   applies the JSON text of an event; returns an error message if the event does not decode
   */
  constructor(wit, state, fold) {
    super(wit, state);
    this.#fold = fold;
  }

  /** The working state: the state before the command with every emitted event applied. */
  get state() {
    return this._state;
  }

  /** The events emitted so far by this command, as `apply` saw them. */
  get emitted() {
    return this.#emitted.slice();
  }

  /** Emits an event (any JSON value) and applies it to the working state. */
  emit(event) {
    let text;
    try {
      text = stringify(event);
    } catch (error) {
      this._fail(`cannot encode the event: ${error.message}`);
      return;
    }
    if (text === undefined) {
      this._fail('cannot encode the event: it has no JSON form');
      return;
    }
    const folded = this.#fold(this._state, text);
    if (typeof folded === 'string') {
      this._fail(folded);
      return;
    }
    this.#events.push(text);
    this.#emitted.push(folded.event);
    this._state = folded.state;
  }

  /** @internal */
  _events() {
    return this.#events;
  }
}

/**
 * The context of a crdt entity's handler: everything a `Context` offers but effects and
 * `forward` (a crdt entity has no journal to keep them in: the command fails if it asks for
 * them), plus `data`, the typed handle of the entity's own data (also the handler's first
 * argument), and `consistency`.
 */
export class CrdtContext extends Context {
  #data;
  #consistency = 'local';

  /**
   * @param {object} wit the WIT `context` record
   * @param {import('./crdt.js').CrdtHandle} data the handle of the entity's data
   */
  constructor(wit, data) {
    super(wit, undefined);
    this.#data = data;
  }

  /** The typed handle of the entity's data. */
  get data() {
    return this.#data;
  }

  /**
   * How many nodes must hold this command's operations before the reply: `'local'` (the
   * default: this node; the others get them by gossip), `'majority'` (more than half of the
   * cluster's nodes) or `'all'`. A request may ask for more with `?consistency=`; the host
   * takes the stronger of the two. Anything else is a misuse (the command fails).
   * @type {'local' | 'majority' | 'all'}
   */
  get consistency() {
    return this.#consistency;
  }

  set consistency(consistency) {
    if (!CONSISTENCIES.includes(consistency)) {
      const found = stringify(consistency) ?? String(consistency);
      this._fail(`consistency must be one of ${CONSISTENCIES.map((c) => `'${c}'`).join(', ')}, not ${found}`);
      return;
    }
    this.#consistency = consistency;
  }
}
