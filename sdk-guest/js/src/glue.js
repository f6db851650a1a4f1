/*
 * The export glue: turns an entity definition (value, event-sourced or crdt) into the five
 * functions of the WIT `entity` interface (`describe`, `handle`, `apply`, `renderState`,
 * `renderEvent`) and the optional `fold` interface's `applyAll`, with the WIT types as componentize-js passes them (records as objects, `u64`
 * as BigInt, `list<u8>` as `Uint8Array`, `option` as a value or `undefined`, `result` as
 * `{tag: 'ok' | 'err', val}`, variants as `{tag, val}`, enums as their WIT names). The test
 * kit calls the very same functions.
 *
 * Failures:
 * - an unknown command name is `unknown-command`; a payload that is not JSON or does not fit
 *   the command's schema (or a `badRequest()` from the handler) is `bad-request`;
 * - `reject(message)` is `rejected` with the message;
 * - state or events that do not decode or encode, a reply with no JSON form, misuse of the
 *   context or of a crdt handle, and effects asked of a crdt or ephemeral entity are `rejected`
 *   with a message starting with `entity error:`;
 * - any other exception escaping the entity's code is a bug: it is written to stderr (the host
 *   attaches the tail of the guest's output to the failure) and rethrown, so the component
 *   traps and the command fails with `entity_failed`. Nothing is persisted either way.
 */

import { CrdtContext, EventContext, ValueContext } from './context.js';
import { CRDT_TYPES, CrdtRecorder, emptyValue, handleFor } from './crdt.js';
import { parse, stringify } from './json.js';
import { SchemaError } from './schema.js';

/** A business rule said no: the command is `rejected` with this message. */
export class Rejection extends Error {
  constructor(message) {
    super(message);
    this.name = 'Rejection';
  }
}

/** The payload is not what the command expects: the command is a `bad-request`. */
export class BadRequest extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadRequest';
  }
}

/** The entity's code or data failed (not a business rule): `rejected` as `entity error: ...`. */
export class EntityError extends Error {
  constructor(message) {
    super(message);
    this.name = 'EntityError';
  }
}

/**
 * Rejects the command: throws a `Rejection`, so nothing is persisted and no effect runs, and the
 * caller sees `message`.
 * @param {string} message
 * @returns {never}
 */
export function reject(message) {
  throw new Rejection(String(message));
}

/**
 * Refuses the command's payload: throws a `BadRequest` (for checks a schema does not express).
 * @param {string} message
 * @returns {never}
 */
export function badRequest(message) {
  throw new BadRequest(String(message));
}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder('utf-8', { fatal: true });

/**
 * Whether `name` is a valid entity key, topic or command name for the host: 1 to 256 bytes of
 * UTF-8, no `/` and no control character.
 */
export function isName(name) {
  return (
    typeof name === 'string' &&
    name !== '' &&
    ENCODER.encode(name).length <= 256 &&
    !/[\/\u0000-\u001f\u007f-\u009f]/.test(name)
  );
}

/** Checks the `subscriptions` of a definition: their normalized form. */
function subscriptions(what, declared, commands) {
  if (declared === undefined) {
    return [];
  }
  if (!Array.isArray(declared)) {
    throw new TypeError(`${what}: \`subscriptions\` must be an array of { topic, command, key }`);
  }
  return declared.map((s, i) => {
    const where = `${what}: subscription ${i}`;
    if (typeof s !== 'object' || s === null) {
      throw new TypeError(`${where}: expected { topic, command, key: { pointer } | { fixed } }`);
    }
    const { topic, command, key } = s;
    if (!isName(topic)) {
      throw new TypeError(`${where}: \`topic\` must be a topic name (1-256 bytes, no \`/\`)`);
    }
    if (typeof command !== 'string' || !commands.has(command)) {
      throw new TypeError(
        `${where}: the subscription to topic \`${topic}\` names the command \`${command}\`, which is not in \`commands\``,
      );
    }
    const forms = typeof key === 'object' && key !== null ? Object.keys(key) : [];
    if (forms.length !== 1 || !['pointer', 'fixed'].includes(forms[0])) {
      throw new TypeError(
        `${where}: \`key\` must be { pointer: '/json/pointer' } or { fixed: 'entity-key' }`,
      );
    }
    if ('pointer' in key) {
      const pointer = key.pointer;
      if (typeof pointer !== 'string' || (pointer !== '' && !pointer.startsWith('/'))) {
        throw new TypeError(
          `${where}: \`key.pointer\` is a JSON pointer into the message (empty or starting with \`/\`, like \`/to\`)`,
        );
      }
      return { topic, command, key: { pointer } };
    }
    if (!isName(key.fixed)) {
      throw new TypeError(`${where}: \`key.fixed\` must be an entity key (1-256 bytes, no \`/\`)`);
    }
    return { topic, command, key: { fixed: key.fixed } };
  });
}

/** The key under which an entity keeps its definition, for the test kit. */
export const DEFINITION = Symbol.for('cella.entity.definition');

const WHAT = { value: 'valueEntity', 'event-sourced': 'eventSourcedEntity', crdt: 'crdtEntity' };

/**
 * Checks the `commands` of a definition: handlers by name, `{payload, handle}`. `first` names
 * a handler's first argument in messages (`state`, or a crdt entity's `data`).
 */
function commandsOf(what, def, first) {
  if (typeof def.commands !== 'object' || def.commands === null) {
    throw new TypeError(`${what}: \`commands\` must be an object of command handlers by name`);
  }
  const commands = new Map();
  for (const [name, command] of Object.entries(def.commands)) {
    if (name === '') {
      throw new TypeError(`${what}: a command name is empty`);
    }
    if (typeof command === 'function') {
      commands.set(name, { payload: undefined, handle: command });
    } else if (
      typeof command === 'object' &&
      command !== null &&
      typeof command.handle === 'function' &&
      (command.payload === undefined || typeof command.payload === 'function')
    ) {
      commands.set(name, { payload: command.payload, handle: command.handle });
    } else {
      throw new TypeError(
        `${what}: command \`${name}\` must be a function or { payload?: schema, handle(${first}, payload, ctx) }`,
      );
    }
  }
  return commands;
}

/** Checks the `durability` of a definition. */
function durabilityOf(what, kind, def) {
  const durability = def.durability ?? 'durable';
  if (durability !== 'durable' && durability !== 'ephemeral') {
    throw new TypeError(`${what}: \`durability\` must be 'durable' or 'ephemeral'`);
  }
  if (durability === 'ephemeral' && kind === 'event-sourced') {
    throw new TypeError(
      `${what}: an event-sourced entity cannot be ephemeral (its state is its journal); use a value or crdt entity`,
    );
  }
  return durability;
}

/** Checks a crdt entity's definition (see `normalize`). */
function normalizeCrdt(what, def) {
  if (!CRDT_TYPES.includes(def.type)) {
    throw new TypeError(`${what}: \`type\` must be a crdt type, one of ${CRDT_TYPES.join(', ')}`);
  }
  if (def.subscriptions !== undefined && def.subscriptions.length !== 0) {
    throw new TypeError(`${what}: a crdt entity cannot subscribe to topics (deliveries need its partition's journal)`);
  }
  for (const key of ['initialState', 'stateSchema', 'apply', 'eventSchema', 'eventsTopic', 'snapshotEvery']) {
    if (def[key] !== undefined) {
      throw new TypeError(
        `${what}: a crdt entity has no \`${key}\` (its state is its crdt type's value, kept by the host)`,
      );
    }
  }
  const commands = commandsOf(what, def, 'data');
  return {
    kind: 'crdt',
    initialText: stringify(emptyValue(def.type)),
    commands,
    snapshotEvery: 0,
    subscriptions: [],
    eventsTopic: undefined,
    durability: durabilityOf(what, 'crdt', def),
    crdt: def.type,
  };
}

/**
 * Checks a definition and returns its normalized form.
 * @param {'value' | 'event-sourced' | 'crdt'} kind
 * @param {object} def
 */
export function normalize(kind, def) {
  const what = WHAT[kind];
  if (typeof def !== 'object' || def === null) {
    throw new TypeError(`${what}: expected a definition object`);
  }
  if (kind === 'crdt') {
    return normalizeCrdt(what, def);
  }
  if (!('initialState' in def)) {
    throw new TypeError(`${what}: \`initialState\` is missing (the state of a new entity)`);
  }
  let initialText;
  try {
    initialText = stringify(def.initialState);
  } catch (error) {
    throw new TypeError(`${what}: \`initialState\` has no JSON form: ${error.message}`);
  }
  if (initialText === undefined) {
    throw new TypeError(`${what}: \`initialState\` has no JSON form`);
  }
  const commands = commandsOf(what, def, 'state');
  for (const key of ['stateSchema', 'eventSchema']) {
    if (def[key] !== undefined && typeof def[key] !== 'function') {
      throw new TypeError(`${what}: \`${key}\` must be a schema (a function)`);
    }
  }
  const snapshotEvery = def.snapshotEvery ?? 0;
  if (!Number.isInteger(snapshotEvery) || snapshotEvery < 0 || snapshotEvery > 0xffffffff) {
    throw new TypeError(`${what}: \`snapshotEvery\` must be an integer from 0 to 2^32 - 1`);
  }
  if (kind === 'event-sourced' && typeof def.apply !== 'function') {
    throw new TypeError(`${what}: \`apply(state, event)\` is missing`);
  }
  const eventsTopic = def.eventsTopic ?? undefined;
  if (
    kind === 'value' &&
    (def.apply !== undefined || def.eventSchema !== undefined || eventsTopic !== undefined)
  ) {
    throw new TypeError(
      `${what}: a value entity has no events (no \`apply\`, \`eventSchema\` or \`eventsTopic\`)`,
    );
  }
  if (eventsTopic !== undefined && !isName(eventsTopic)) {
    throw new TypeError(`${what}: \`eventsTopic\` must be a topic name (1-256 bytes, no \`/\`)`);
  }
  const durability = durabilityOf(what, kind, def);
  const subscribed = subscriptions(what, def.subscriptions, commands);
  if (durability === 'ephemeral' && subscribed.length > 0) {
    throw new TypeError(`${what}: an ephemeral entity cannot subscribe to topics (deliveries are journaled)`);
  }
  return {
    kind,
    initialText,
    commands,
    stateSchema: def.stateSchema,
    eventSchema: def.eventSchema,
    apply: def.apply,
    snapshotEvery,
    subscriptions: subscribed,
    eventsTopic,
    durability,
    crdt: undefined,
  };
}

/** Decodes stored bytes (or the initial state) as JSON fitting `schema`. */
function decode(what, text, schema) {
  let value;
  try {
    value = parse(text);
  } catch (error) {
    throw new EntityError(`cannot decode the ${what}: ${error.message}`);
  }
  if (schema === undefined) {
    return value;
  }
  try {
    return schema(value, '');
  } catch (error) {
    if (error instanceof SchemaError) {
      throw new EntityError(`cannot decode the ${what}: ${error.message}`);
    }
    throw error;
  }
}

function utf8(what, bytes) {
  try {
    return DECODER.decode(bytes);
  } catch {
    throw new EntityError(`cannot decode the ${what}: it is not UTF-8`);
  }
}

/** JSON text of `value`, or an `EntityError`. */
function encodeText(what, value) {
  let text;
  try {
    text = stringify(value);
  } catch (error) {
    throw new EntityError(`cannot encode the ${what}: ${error.message}`);
  }
  if (text === undefined) {
    throw new EntityError(`cannot encode the ${what}: it has no JSON form`);
  }
  return text;
}

function describeError(error) {
  if (error instanceof Error) {
    const stack = typeof error.stack === 'string' ? error.stack.trimEnd() : '';
    return stack === '' ? String(error) : `${error}\n${stack}`;
  }
  try {
    return stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

const ok = (val) => ({ tag: 'ok', val });
const err = (val) => ({ tag: 'err', val });
const failure = (tag, val) => err({ tag, val });

/**
 * The five functions of the WIT `entity` interface for a normalized definition.
 * @param {ReturnType<typeof normalize>} def
 * @param {{logUncaught: boolean}} options log exceptions escaping the entity code to stderr
 *   before rethrowing them (the component does; the test kit lets them propagate silently)
 */
export function glue(def, { logUncaught }) {
  const eventSourced = def.kind === 'event-sourced';
  const crdt = def.kind === 'crdt';
  /** Whether commands may ask for effects and forwards (kept in the journal's outbox). */
  const outbox = def.durability === 'durable' && !crdt;
  const noEvents = `a ${def.kind} entity has no events`;
  const descriptor = {
    kind: def.kind,
    commands: [...def.commands.keys()],
    snapshotEvery: def.snapshotEvery,
    subscriptions: def.subscriptions.map(({ topic, command, key }) => ({
      topic,
      command,
      key: 'pointer' in key ? { tag: 'pointer', val: key.pointer } : { tag: 'fixed', val: key.fixed },
    })),
    eventsTopic: def.eventsTopic,
    durability: def.durability,
    crdt: def.crdt,
  };

  /**
   * What to throw for an exception that escaped the entity's code. In the component, the
   * exception is written to stderr and a value is thrown whose `payload` getter throws: the
   * componentize-js bindings read `payload` to turn a thrown value into an `err`, so the throw
   * escapes the export and the component traps, without the bindings' own complaint about an
   * invalid `failure`. The test kit gets the original exception.
   */
  const uncaught = (where, error) => {
    if (!logUncaught) {
      return error;
    }
    console.error(`entity error: uncaught exception in ${where}: ${describeError(error)}`);
    return {
      get payload() {
        throw 'the entity trapped on the uncaught exception above';
      },
    };
  };

  const decodeState = (bytes) =>
    decode('state', bytes === undefined || bytes === null ? def.initialText : utf8('state', bytes), def.stateSchema);

  const decodeEvent = (text) => decode('event', text, def.eventSchema);

  /** Applies the entity's `apply`: it returns the new state, or mutates and returns nothing. */
  const applyEvent = (state, event) => {
    const next = def.apply(state, event);
    return next === undefined ? state : next;
  };

  /** The fold behind `EventContext.emit`: the event as the journal will give it back. */
  const foldEmitted = (state, text) => {
    let event;
    try {
      event = decodeEvent(text);
    } catch (error) {
      if (error instanceof EntityError) {
        return `the emitted event does not fit the event schema: ${error.message}`;
      }
      throw error;
    }
    return { state: applyEvent(state, event), event };
  };

  /** A value or event-sourced command: its handler's arguments, and what it persists. */
  function startState(witContext, stateBytes) {
    const state = decodeState(stateBytes);
    if (eventSourced) {
      const ctx = new EventContext(witContext, state, foldEmitted);
      return {
        first: state,
        ctx,
        finish() {
          const events = ctx._events().map((text) => ENCODER.encode(text));
          const newState = events.length > 0 ? ENCODER.encode(encodeText('state', ctx.state)) : undefined;
          return { events, state: newState };
        },
      };
    }
    const before = encodeText('state', state);
    const ctx = new ValueContext(witContext, state);
    return {
      first: state,
      ctx,
      finish() {
        // Compared as this code encodes it, so that a read-only command never persists.
        const after = encodeText('state', ctx.state);
        return { state: after === before ? undefined : ENCODER.encode(after) };
      },
    };
  }

  /** A crdt command: the handle of the entity's data, and the operations it recorded. */
  function startCrdt(witContext, stateBytes) {
    // The host always passes the merged value; a new entity's is the type's empty value.
    const text = stateBytes === undefined || stateBytes === null ? def.initialText : utf8('crdt value', stateBytes);
    const value = decode('crdt value', text, undefined);
    const recorder = new CrdtRecorder(def.crdt, value);
    const data = handleFor(recorder, [], def.crdt);
    const ctx = new CrdtContext(witContext, data);
    return {
      first: data,
      ctx,
      finish() {
        if (recorder.error !== undefined) {
          throw new EntityError(recorder.error);
        }
        return { crdtOps: recorder.ops, consistency: ctx.consistency };
      },
    };
  }

  function handle(witContext, stateBytes, payloadText) {
    const name = witContext.command;
    const command = def.commands.get(name);
    if (command === undefined) {
      return failure('unknown-command', name);
    }
    let payload;
    try {
      payload = payloadText.trim() === '' ? null : parse(payloadText);
    } catch (error) {
      return failure('bad-request', `command \`${name}\`: the payload is not valid JSON: ${error.message}`);
    }
    try {
      if (command.payload !== undefined) {
        payload = command.payload(payload, '');
      }
      const run = crdt ? startCrdt(witContext, stateBytes) : startState(witContext, stateBytes);
      const reply = command.handle(run.first, payload, run.ctx);
      if (reply !== null && typeof reply === 'object' && typeof reply.then === 'function') {
        throw new EntityError(
          `the handler of \`${name}\` returned a Promise: handlers must be synchronous`,
        );
      }
      const requested = run.ctx._finish();
      if (requested.error !== undefined) {
        throw new EntityError(requested.error);
      }
      if (!outbox && (requested.effects.length > 0 || requested.forward !== undefined)) {
        throw new EntityError(
          `${crdt ? 'a crdt' : 'an ephemeral'} entity cannot ask for effects or forward a command ` +
            '(they need the journal of a durable value or event-sourced entity)',
        );
      }
      // Ignored by the host when the command is forwarded, but it must still be JSON.
      const replyText = encodeText('reply', reply ?? null);
      return ok({
        events: [],
        state: undefined,
        reply: replyText,
        forward: requested.forward,
        effects: requested.effects,
        crdtOps: [],
        consistency: 'local',
        ...run.finish(),
      });
    } catch (error) {
      if (error instanceof Rejection) {
        return failure('rejected', error.message);
      }
      if (error instanceof BadRequest || error instanceof SchemaError) {
        return failure('bad-request', `command \`${name}\`: ${error.message}`);
      }
      if (error instanceof EntityError) {
        return failure('rejected', `entity error: ${error.message}`);
      }
      throw uncaught(`command \`${name}\``, error);
    }
  }

  /** Runs `body`, turning entity errors into `err(message)` and logging anything else. */
  function guarded(where, body) {
    try {
      return ok(body());
    } catch (error) {
      if (error instanceof EntityError) {
        return err(error.message);
      }
      throw uncaught(where, error);
    }
  }

  return {
    describe: () => descriptor,

    handle,

    apply(stateBytes, eventBytes) {
      if (!eventSourced) {
        return err(noEvents);
      }
      return guarded('apply', () => {
        const state = decodeState(stateBytes);
        const event = decodeEvent(utf8('event', eventBytes));
        return ENCODER.encode(encodeText('state', applyEvent(state, event)));
      });
    },

    /**
     * The optional `fold` interface's `apply-all`: decodes the state once, applies every event
     * and encodes the state once — the state `apply` per event gives (`handle` folds a
     * command's events the same way).
     */
    applyAll(stateBytes, events) {
      if (!eventSourced) {
        return err(noEvents);
      }
      return guarded('applyAll', () => {
        let state = decodeState(stateBytes);
        for (const eventBytes of events) {
          state = applyEvent(state, decodeEvent(utf8('event', eventBytes)));
        }
        return ENCODER.encode(encodeText('state', state));
      });
    },

    renderState(stateBytes) {
      return guarded('renderState', () => encodeText('state', decodeState(stateBytes)));
    },

    renderEvent(eventBytes) {
      if (!eventSourced) {
        return err(noEvents);
      }
      return guarded('renderEvent', () => encodeText('event', decodeEvent(utf8('event', eventBytes))));
    },
  };
}
