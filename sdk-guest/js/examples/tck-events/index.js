/*
 * The TCK's event-sourced model (`tck-events`, tests/tck/SPEC.md): as `tck-value`, except that
 * `process` changes the state by emitting `{"appended": s}` events (`emit`), which `apply`
 * appends to the state's `value`.
 */

import { eventSourcedEntity, reject, schema } from 'cella-sdk';

const target = schema.object({
  type: schema.string,
  key: schema.string,
  command: schema.string,
  payload: schema.any,
});

const action = schema.variant({
  emit: schema.string,
  fail: schema.string,
  forward: target,
  call: target,
  publish: schema.object({ topic: schema.string, payload: schema.any }),
  schedule: schema.object({
    name: schema.string,
    delayMs: schema.uint64,
    command: schema.string,
    payload: schema.any,
  }),
});

export const entity = eventSourcedEntity({
  initialState: { value: '' },
  stateSchema: schema.object({ value: schema.string }),
  eventSchema: schema.object({ appended: schema.string }),
  snapshotEvery: 0,
  commands: {
    process: {
      payload: schema.object({ actions: schema.array(action) }),
      handle(_state, { actions }, ctx) {
        for (const a of actions) {
          if ('emit' in a) {
            ctx.emit({ appended: a.emit });
          } else if ('fail' in a) {
            reject(a.fail);
          } else if ('forward' in a) {
            const { type, key, command, payload } = a.forward;
            ctx.forward(type, key, command, payload);
          } else if ('call' in a) {
            const { type, key, command, payload } = a.call;
            ctx.call(type, key, command, payload);
          } else if ('publish' in a) {
            ctx.publish(a.publish.topic, a.publish.payload);
          } else if ('schedule' in a) {
            const { name, delayMs, command, payload } = a.schedule;
            ctx.schedule(name, delayMs, command, payload);
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
  },
  apply(state, { appended }) {
    return { value: state.value + appended };
  },
});
