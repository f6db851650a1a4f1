/*
 * The Cella JavaScript SDK: write an entity as a plain definition object and export it as a
 * `cella:entity@0.2.0` component (built with componentize-js). This module is the public API:
 * `valueEntity`, `eventSourcedEntity`, `crdtEntity`, `reject`, `badRequest`, the `schema`
 * decoders, the context and crdt handle classes and exact JSON helpers. `cella-sdk/testing`
 * holds the test kit.
 *
 * # Entities
 *
 * An entity is business logic only. The host owns the state, the journal and replication: for
 * every command it hands the entity the current state and the command, and the entity answers
 * with data. There are three kinds:
 *
 * - a value entity (`valueEntity`) changes its state in place; the SDK persists the whole new
 *   state when (and only when) the command changed it;
 * - an event-sourced entity (`eventSourcedEntity`) validates a command against its state and
 *   emits events; the host persists the events, and the state is the fold of `apply` over them;
 * - a crdt entity (`crdtEntity`, see CRDT entities) reads a replicated data type through a
 *   typed handle and answers with operations on it; every node serves it without consensus.
 *
 * State, events, payloads and replies are JSON. A component exports one entity, as the
 * module's `entity` export (the name of the WIT interface):
 *
 * ```js
 * import { valueEntity, reject, schema, isInt64 } from 'cella-sdk';
 *
 * export const entity = valueEntity({
 *   initialState: { total: 0n },
 *   stateSchema: schema.object({ total: schema.int64 }),
 *   commands: {
 *     add: {
 *       payload: schema.int64,
 *       handle(state, n) {
 *         const total = state.total + n;
 *         if (!isInt64(total)) reject(`adding ${n} overflows`);
 *         state.total = total;
 *         return total;
 *       },
 *     },
 *     get: { payload: schema.null, handle: (state) => state.total },
 *   },
 * });
 * ```
 *
 * # Definitions
 *
 * - `initialState`: the state of a new entity (any JSON value; it is copied for every command).
 * - `commands`: handlers by command name (kebab-case, as in the URL), in the order the entity
 *   declares them. A handler is `(state, payload, ctx) => reply`, or
 *   `{ payload: schema, handle(state, payload, ctx) }` to check and decode the payload first
 *   (see `schema`). The reply is any JSON value (`undefined` replies `null`). An empty request
 *   body is the payload `null`.
 * - `stateSchema` (optional): a schema the stored state is decoded with (e.g. to get 64-bit
 *   integers as BigInts).
 * - event-sourced only: `apply(state, event)` folds one event into the state: it returns the new
 *   state, or mutates `state` and returns nothing. It must be pure and must not fail: it runs
 *   again whenever the host rebuilds the state. `eventSchema` (optional) decodes stored events;
 *   `snapshotEvery` asks the host for a snapshot every this many events (0 = host default);
 *   `eventsTopic` has the host publish every persisted event to that topic (see Topics).
 * - `subscriptions` (optional): the topics the entity subscribes to (see Topics).
 * - value only: `durability: 'ephemeral'` keeps the state in memory only, never written to
 *   disk (default `'durable'`): the handlers see no difference, but the state lives on its
 *   partition's leader and is gone after a restart or a leadership change. An ephemeral entity
 *   cannot ask for effects or `forward` (they need the journal): such a command fails with an
 *   `entity error:`; nor can it subscribe to topics (a `TypeError` when the module loads). For
 *   caches, presence, anything cheap to lose.
 *
 * A value handler mutates the `state` it is given (or assigns `ctx.state`). An event-sourced
 * handler must not touch `state`: it calls `ctx.emit(event)`, which applies the event at once,
 * so `ctx.state` is the state with every event emitted so far (and so is `state`, if `apply`
 * mutates).
 *
 * # The context
 *
 * `ctx` carries what the host chose and journaled for this command: `entityType`, `key`,
 * `commandId`, `command`, `timestampMs` and `sequence` (numbers), `randomSeed` (a BigInt), and
 * `random()` / `randomU64()` (a deterministic sequence from the seed). It also collects effects
 * that run after the change is durable, each exactly once: `call(type, key, command, payload)`
 * (fire-and-forget), `call(type, key, command, payload, { replyTo, correlation })` (the outcome
 * comes back to this entity as the command `replyTo`, with `ctx.correlation` set and the
 * payload `{"ok": <reply>}` or `{"error": {"code", "message"}}`: decode it with
 * `schema.callReply()`), `publish(topic, payload)`, `schedule(name, delayMs, command, payload)`
 * (with `{ everyMs }` it repeats until cancelled; a timer of the same name replaces it; the
 * command it fires has `ctx.timer` set), `cancel(name)`, and
 * `forward(type, key, command, payload)`, which hands the command on to another entity whose
 * reply becomes the caller's (at most once per command), and `broadcast(type, command,
 * payload)`, which sends the command to every entity of that type that exists when the host
 * carries it out, each exactly once (replies are not seen). `ctx.correlation`, `ctx.timer` and
 * `ctx.message` (see Topics) are `null` unless set.
 *
 * # Topics
 *
 * A topic is a durable, ordered log of JSON messages, written by `ctx.publish(topic, payload)`,
 * by `POST /v1/topics/<topic>` and by event-sourced entities' `eventsTopic`. A definition
 * subscribes to topics with `subscriptions`: each message reaches the entity its key names,
 * exactly once, in topic order, as the subscription's command with the message as payload and
 * `ctx.message` set to `{ topic, offset }` (offset 1 for the topic's first message):
 *
 * ```js
 * export const entity = valueEntity({
 *   initialState: { lines: [] },
 *   // {"to": "alice", "text": "hi"} reaches the entity `alice`; an array of keys, each of them.
 *   subscriptions: [{ topic: 'news', command: 'on-news', key: { pointer: '/to' } }],
 *   commands: {
 *     'on-news': (state, message, ctx) => {
 *       state.lines.push(`${ctx.message.offset}: ${message.text}`);
 *     },
 *   },
 * });
 * ```
 *
 * `key` is `{ pointer }`, a JSON pointer (RFC 6901) into the message naming the entity (a string
 * or number there, or an array of them: one entity per element; a message without a usable key
 * is not delivered), or `{ fixed: 'all' }`, always that one entity. An event-sourced
 * definition's `eventsTopic: 'cart-events'` has the host publish each persisted event there as
 * `{"type": T, "key": K, "seq": S, "index": I, "event": E}`. A subscription naming a command
 * the definition does not have, or an `eventsTopic` on a value entity, is a `TypeError` when
 * the module loads (so the build fails).
 *
 * # CRDT entities
 *
 * `crdtEntity({ type, commands, durability? })` declares an entity whose state
 * is a CRDT of `type`: `'g-counter'`, `'pn-counter'`, `'g-set'`, `'or-set'`, `'lww-register'`,
 * `'flag'`, `'or-map'` or `'vote'`. The host owns it: every node keeps a replica, serves
 * commands from it and gossips the changes. A handler is `(data, payload, ctx) => reply`, with
 * `data` the typed handle of the entity's data (also `ctx.data`):
 *
 * ```js
 * import { crdtEntity, schema } from 'cella-sdk';
 *
 * export const entity = crdtEntity({
 *   type: 'or-map',
 *   durability: 'ephemeral', // optional: rebuilt from the other nodes' replicas after a restart
 *   commands: {
 *     visit: {
 *       payload: schema.string,
 *       handle(data, page, ctx) {
 *         data.gCounter(page).increment();
 *         data.orSet('pages').add(page);
 *         ctx.consistency = 'majority';
 *         return data.gCounter(page).value; // this command's increment included
 *       },
 *     },
 *     stats: (data) => ({ pages: data.orSet('pages').elements, visits: data.value }),
 *   },
 * });
 * ```
 *
 * The handles (classes `GCounter`, `PNCounter`, `GSet`, `ORSet`, `LWWRegister`, `Flag`,
 * `ORMap`, `Vote`) read the merged value the host passed, as its JSON view, and record
 * operations:
 *
 * | type | reads | operations |
 * |---|---|---|
 * | `g-counter` | `value` (a number; a BigInt beyond 2^53) | `increment(n = 1)` |
 * | `pn-counter` | `value` | `increment(n = 1)`, `decrement(n = 1)` |
 * | `g-set` | `elements` (= `value`), `size`, `has(x)` | `add(x)` |
 * | `or-set` | as `g-set` | `add(x)`, `remove(x)`, `clear()` |
 * | `lww-register` | `value` (`null` before the first `set`) | `set(x)` |
 * | `flag` | `enabled` (= `value`) | `enable()`, `disable()`, `clear()` |
 * | `or-map` | `value` (an object), `keys`, `size`, `has(key)` | `delete(key)`, `clear()` |
 * | `vote` | `value` (`{votes_for, voters, majority}`), `votesFor`, `voters`, `majority` | `vote(b)` |
 *
 * Elements and register values are any JSON; a set's elements are sorted by their canonical
 * JSON text (object keys sorted, no whitespace), as the host keeps them. An or-map gives a
 * handle on a key's data with `gCounter(key)`, `pnCounter`, `gSet`, `orSet`, `lwwRegister`,
 * `flag`, `orMap`, `vote`, or `get(key, type)`; maps nest (`data.orMap('a').flag('b')`). The
 * first operation on a key creates its data with the handle's type. Every handle has `type`,
 * `path` (the map keys leading to it) and `exists`.
 *
 * Reads reflect the command's own operations: a counter with its increments, a set with its
 * adds and removes, a register with its `set`, a flag, a map's keys. They show this node's
 * view of the replicated value, as one replica: a register set in this command reads as that
 * value, a vote shows this command's vote only while nobody had voted, and data deleted or
 * cleared reads as new in the rest of the command (the host keeps a deleted key's data unread,
 * so a counter written again after `delete` goes on from its old count). A handle of one type
 * used on data of another (a `flag` on a key holding a counter) is not checked by the SDK: the
 * host fails the command (`entity_failed`) and applies none of its operations.
 *
 * `ctx.consistency` (`'local'` by default, `'majority'` or `'all'`) says how many nodes must
 * hold the command's operations before the reply; the request may ask for more with
 * `?consistency=`, and the stronger one applies. A crdt entity has no effects and cannot
 * `forward` (a command that asks for them fails with an `entity error:`) and no topic
 * subscriptions; the rest of the context is there. Bad operation arguments (a negative increment, an element with no JSON
 * form) fail the command the same way.
 *
 * # Numbers
 *
 * JSON integers beyond 2^53 do not fit a JavaScript number, so the SDK's JSON keeps them exact:
 * an integer literal outside the safe range is parsed as a BigInt, and BigInts are written as
 * plain JSON numbers. `schema.int64` / `schema.uint64` always decode to BigInts, so arithmetic
 * on them is exact; `isInt64` checks a result still fits a signed 64-bit integer.
 *
 * # Failures
 *
 * - a command name the entity does not declare is `unknown-command`;
 * - a payload that is not JSON or does not fit the command's schema, or `badRequest(message)`,
 *   is `bad-request` (the message starts with the command name);
 * - `reject(message)` is `rejected` with the message;
 * - state or events that do not decode or encode, a reply with no JSON form, and misuse of the
 *   context (two forwards, a payload with no JSON form, an event that does not fit
 *   `eventSchema`) are `rejected` with a message starting with `entity error:`;
 * - any other exception that escapes the entity's code is a bug: the SDK writes it, with its
 *   stack, to stderr and the component traps; the host fails the command (`entity_failed`) and
 *   attaches the tail of the guest's output.
 *
 * Whatever the failure, nothing is persisted and no effect runs.
 *
 * # Determinism
 *
 * Handlers must be deterministic and synchronous: the host replays and retries commands, and
 * `apply` runs again whenever state is rebuilt. The component has no real clock, randomness,
 * files or network: `Date.now()` returns the time the component was built and `Math.random()`
 * a fixed sequence, and timers are not available. Use `ctx.timestampMs` and `ctx.random()`.
 *
 * # Testing
 *
 * `TestKit` from `cella-sdk/testing` runs commands through the same export functions a
 * component runs, in Node, without building a component (`node --test`). For a crdt entity it
 * keeps the value as one replica and applies each command's operations to it as the host
 * does: `kit.value` reads it, `kit.setValue(json)` feeds one in, `kit.last.ops` and
 * `kit.last.consistency` are what the command answered, and operations the host would refuse
 * fail the command (`CommandFailure` of kind `failed`). `kit.restart()` empties an ephemeral
 * entity.
 */

import { normalize, glue, DEFINITION } from './glue.js';

export { Rejection, BadRequest, reject, badRequest } from './glue.js';
export { Context, ValueContext, EventContext, CrdtContext } from './context.js';
export {
  CRDT_TYPES,
  CRDT_ACTIONS,
  CONSISTENCIES,
  CrdtHandle,
  GCounter,
  PNCounter,
  GSet,
  ORSet,
  LWWRegister,
  Flag,
  ORMap,
  Vote,
} from './crdt.js';
export { schema, SchemaError, isInt64, INT64_MIN, INT64_MAX, UINT64_MAX } from './schema.js';
export { parse as parseJson, stringify as stringifyJson, canonical as canonicalJson } from './json.js';

/**
 * A topic the entity subscribes to: its messages come as `command`, to the entity named by the
 * JSON pointer `key.pointer` into the message, or always to the entity `key.fixed`.
 * @typedef {{topic: string, command: string, key: {pointer: string} | {fixed: string}}} Subscription
 */

function define(kind, def) {
  const normalized = normalize(kind, def);
  const entity = glue(normalized, { logUncaught: true });
  Object.defineProperty(entity, DEFINITION, { value: normalized });
  return Object.freeze(entity);
}

/**
 * Defines a value entity. Export the result as `entity`:
 * `export const entity = valueEntity({ initialState, commands })`.
 * @param {{
 *   initialState: unknown,
 *   commands: Record<string, Function | { payload?: Function, handle: Function }>,
 *   stateSchema?: Function,
 *   subscriptions?: Subscription[],
 *   durability?: 'durable' | 'ephemeral',
 * }} definition
 */
export function valueEntity(definition) {
  return define('value', definition);
}

/**
 * Defines an event-sourced entity. Export the result as `entity`:
 * `export const entity = eventSourcedEntity({ initialState, commands, apply })`.
 * @param {{
 *   initialState: unknown,
 *   commands: Record<string, Function | { payload?: Function, handle: Function }>,
 *   apply: (state: any, event: any) => any,
 *   stateSchema?: Function,
 *   eventSchema?: Function,
 *   snapshotEvery?: number,
 *   subscriptions?: Subscription[],
 *   eventsTopic?: string,
 * }} definition
 */
export function eventSourcedEntity(definition) {
  return define('event-sourced', definition);
}

/**
 * Defines a crdt entity. Export the result as `entity`:
 * `export const entity = crdtEntity({ type: 'or-map', commands })`. Handlers are
 * `(data, payload, ctx) => reply`, `data` the typed handle of the entity's data.
 * @param {{
 *   type: 'g-counter' | 'pn-counter' | 'g-set' | 'or-set' | 'lww-register' | 'flag' | 'or-map' | 'vote',
 *   commands: Record<string, Function | { payload?: Function, handle: Function }>,
 *   durability?: 'durable' | 'ephemeral',
 * }} definition
 */
export function crdtEntity(definition) {
  return define('crdt', definition);
}
