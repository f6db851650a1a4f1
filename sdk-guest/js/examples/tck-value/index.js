/*
 * The TCK's value model (`tck-value`, tests/tck/SPEC.md): `process` runs a list of actions
 * against a working copy of the state (`update`, `append`, `fail`, `forward`, `call`,
 * `publish`, `schedule`, `cancel`, `broadcast`), `get` replies the state, `context` replies the
 * command context, `on-reply` (the reply route of calls) appends the outcome of a call to the
 * state, and `on-message` (the subscriber of topic `tck-news`, for the entities its `to` names)
 * appends `T@O:S;` for each message. The isolation actions (`remember`, `spin`, `crash`) show
 * whether a module-level global survives from one command to another (it must not).
 */

import { badRequest, reject, schema, valueEntity } from 'cella-sdk';

/** The JSON payload of an action: `null` when missing. */
const optionalPayload = schema.optional(schema.any);

/** An entity address with a command for it: the target of `forward` and `call`. */
const target = schema.object({
  type: schema.string,
  key: schema.string,
  command: schema.string,
  payload: optionalPayload,
  replyTo: schema.optional(schema.object({ command: schema.string, correlation: schema.string })),
});

const action = schema.variant({
  update: schema.string,
  append: schema.string,
  fail: schema.string,
  forward: target,
  call: target,
  publish: schema.object({ topic: schema.string, payload: optionalPayload }),
  schedule: schema.object({
    name: schema.string,
    delayMs: schema.uint64,
    command: schema.string,
    payload: optionalPayload,
    everyMs: schema.optional(schema.uint64),
  }),
  cancel: schema.string,
  remember: schema.string,
  spin: schema.boolean,
  crash: schema.string,
  broadcast: schema.object({ type: schema.string, command: schema.string, payload: optionalPayload }),
});

/** The module-level global G of the isolation actions: what the last `remember` set. */
let remembered = '';

/** The `remember` action: `[G]` for the global's content G before; then sets G to `text`. */
function remember(text) {
  const seen = `[${remembered}]`;
  remembered = text;
  return seen;
}

/** The `spin` action: with `true`, a busy loop that never ends (the node's deadline stops it). */
function spin(forever) {
  let turns = 0;
  while (forever) {
    turns += 1;
  }
  return turns;
}

/** The payload of `on-message`: a message of `tck-news`, `{"to": K or [K, ...], "text": S}`. */
const message = schema.object({ to: schema.optional(schema.any), text: schema.string });

/** `T@O:S;` for the message with text S of topic T at offset O. */
function messageEntry({ text }, ctx) {
  if (ctx.message === null) {
    badRequest('not the delivery of a topic message');
  }
  return `${ctx.message.topic}@${ctx.message.offset}:${text};`;
}

/**
 * Runs an action both models share: fail, forward, call, publish, schedule, cancel, broadcast,
 * spin, crash.
 */
function runCommon(a, ctx) {
  if ('fail' in a) {
    reject(a.fail);
  } else if ('spin' in a) {
    spin(a.spin);
  } else if ('crash' in a) {
    throw new Error(a.crash);
  } else if ('forward' in a) {
    const { type, key, command, payload } = a.forward;
    ctx.forward(type, key, command, payload);
  } else if ('call' in a) {
    const { type, key, command, payload, replyTo } = a.call;
    ctx.call(type, key, command, payload, replyTo && {
      replyTo: replyTo.command,
      correlation: replyTo.correlation,
    });
  } else if ('publish' in a) {
    ctx.publish(a.publish.topic, a.publish.payload);
  } else if ('schedule' in a) {
    const { name, delayMs, command, payload, everyMs } = a.schedule;
    ctx.schedule(name, delayMs, command, payload, { everyMs });
  } else if ('cancel' in a) {
    ctx.cancel(a.cancel);
  } else if ('broadcast' in a) {
    const { type, command, payload } = a.broadcast;
    ctx.broadcast(type, command, payload);
  }
}

export const entity = valueEntity({
  initialState: { value: '' },
  stateSchema: schema.object({ value: schema.string }),
  subscriptions: [{ topic: 'tck-news', command: 'on-message', key: { pointer: '/to' } }],
  commands: {
    process: {
      payload: schema.object({ actions: schema.array(action) }),
      handle(state, { actions }, ctx) {
        for (const a of actions) {
          if ('update' in a) {
            state.value = a.update;
          } else if ('append' in a) {
            state.value += a.append;
          } else if ('remember' in a) {
            state.value += remember(a.remember);
          } else {
            runCommon(a, ctx);
          }
        }
        return { value: state.value };
      },
    },
    get: {
      payload: schema.null,
      handle: (state) => ({ value: state.value }),
    },
    context: {
      payload: schema.null,
      handle: (_state, _payload, ctx) => ({
        entityType: ctx.entityType,
        key: ctx.key,
        command: ctx.command,
        commandId: ctx.commandId,
        sequence: ctx.sequence,
        timestampMs: ctx.timestampMs,
        randomSeed: ctx.randomSeed,
      }),
    },
    'on-reply': {
      payload: schema.callReply(),
      handle(state, outcome, ctx) {
        const x = ctx.correlation;
        if (x === null) {
          badRequest('not the reply route of a call (no correlation)');
        }
        if ('error' in outcome) {
          state.value += `${x}:${outcome.error.code}:${outcome.error.message};`;
        } else {
          const reply = outcome.ok;
          const isObject = typeof reply === 'object' && reply !== null && !Array.isArray(reply);
          const value = isObject && typeof reply.value === 'string' ? reply.value : '';
          state.value += `${x}:ok:${value};`;
        }
        return { value: state.value };
      },
    },
    'on-message': {
      payload: message,
      handle(state, m, ctx) {
        state.value += messageEntry(m, ctx);
        return { value: state.value };
      },
    },
  },
});
