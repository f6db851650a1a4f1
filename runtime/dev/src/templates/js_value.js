/*
 * `{{name}}`: a Cella value entity, made with `cella new`. Its state is a running total: `add`
 * (an integer) adds to it and replies the new total, `get` replies it.
 *
 * Build it with `cella build`, run its tests with `npm test`, then deploy it and try
 * `curl -X POST localhost:8080/v1/entities/{{name}}/alice/add -d 5`.
 */

import { isInt64, reject, schema, valueEntity } from 'cella-sdk';

/** The component's export: the WIT `entity` interface. */
export const entity = valueEntity({
  // The state of a new entity; persisted whole (as JSON) after every command that changes it.
  initialState: { total: 0n },
  // How the stored state is read back: 64-bit totals as BigInts, so arithmetic is exact.
  stateSchema: schema.object({ total: schema.int64 }),
  // The commands by name (kebab-case, as in the URL): a payload schema and a handler.
  commands: {
    add: {
      payload: schema.int64,
      handle(state, n) {
        const total = state.total + n;
        if (!isInt64(total)) {
          reject(`adding ${n} would overflow the total`);
        }
        state.total = total;
        return total;
      },
    },
    get: {
      payload: schema.null,
      handle: (state) => state.total,
    },
  },
});
