/*
 * The TCK's value model (`tck-value`, tests/tck/SPEC.md): `process` runs a list of actions
 * against a working copy of the state (`update`, `fail`, `forward`, `call`, `publish`,
 * `schedule`), `get` replies the state, `context` replies the command context.
 */

import { reject, schema, valueEntity } from 'cella-sdk';

/** An entity address with a command for it: the target of `forward` and `call`. */
const target = schema.object({
  type: schema.string,
  key: schema.string,
  command: schema.string,
  payload: schema.any,
});

const action = schema.variant({
  update: schema.string,
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

export const entity = valueEntity({
  initialState: { value: '' },
  stateSchema: schema.object({ value: schema.string }),
  commands: {
    process: {
      payload: schema.object({ actions: schema.array(action) }),
      handle(state, { actions }, ctx) {
        for (const a of actions) {
          if ('update' in a) {
            state.value = a.update;
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
  },
});
