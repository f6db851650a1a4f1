/*
 * The TCK's event-sourced model (`tck-events`, tests/tck/SPEC.md): as `tck-value`, except that
 * `process` changes the state by emitting `{"appended": s}` events (`emit`), which `apply`
 * appends to the state's `value` (`update` and `append` are the value model's), there is no
 * `on-reply`, `on-message` (the subscriber of topic `tck-news`, always the entity `all`) emits
 * `{"appended": "T@O:S;"}`, and the events are published to topic `tck-events-log`. The
 * isolation actions (`remember`, which emits `[G]` for a module-level global G; `spin`; `crash`)
 * show whether the global survives from one command to another (it must not); `apply` never
 * reads G.
 */

import { badRequest, eventSourcedEntity, reject, schema } from 'cella-sdk';

/** The JSON payload of an action: `null` when missing. */
const optionalPayload = schema.optional(schema.any);

const target = schema.object({
  type: schema.string,
  key: schema.string,
  command: schema.string,
  payload: optionalPayload,
  replyTo: schema.optional(schema.object({ command: schema.string, correlation: schema.string })),
});

const action = schema.variant({
  emit: schema.string,
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

export const entity = eventSourcedEntity({
  initialState: { value: '' },
  stateSchema: schema.object({ value: schema.string }),
  eventSchema: schema.object({ appended: schema.string }),
  snapshotEvery: 0,
  subscriptions: [{ topic: 'tck-news', command: 'on-message', key: { fixed: 'all' } }],
  eventsTopic: 'tck-events-log',
  commands: {
    process: {
      payload: schema.object({ actions: schema.array(action) }),
      handle(_state, { actions }, ctx) {
        for (const a of actions) {
          if ('emit' in a) {
            ctx.emit({ appended: a.emit });
          } else if ('remember' in a) {
            // This SDK applies the event at once, before `remember` sets G; the others apply
            // after `handle` returns, after it: hence `apply` never reads G.
            ctx.emit({ appended: remember(a.remember) });
          } else {
            runCommon(a, ctx);
          }
        }
        // `emit` applied every event to the working state.
        return { value: ctx.state.value };
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
    'on-message': {
      payload: message,
      handle(_state, m, ctx) {
        ctx.emit({ appended: messageEntry(m, ctx) });
        return { value: ctx.state.value };
      },
    },
  },
  apply(state, { appended }) {
    return { value: state.value + appended };
  },
});
