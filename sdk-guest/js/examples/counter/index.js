/*
 * Example value entity: a counter. `add` (a 64-bit integer) replies the new total; `get` the
 * total. The same observable behaviour as the Rust `examples/counter`.
 */

import { isInt64, reject, schema, valueEntity } from 'cella-sdk';

export const entity = valueEntity({
  initialState: { total: 0n },
  // Totals are 64-bit: decode them as BigInts so that arithmetic is exact.
  stateSchema: schema.object({ total: schema.int64 }),
  commands: {
    add: {
      payload: schema.int64,
      handle(state, n) {
        const total = state.total + n;
        if (!isInt64(total)) {
          reject(`adding ${n} overflows`);
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
