/*
 * `{{name}}`: a Cella event-sourced entity, made with `cella new`. A ledger: `deposit` and
 * `withdraw` (an amount) record events and reply the new balance, `balance` replies it. A
 * withdrawal larger than the balance is rejected. The state is the fold of the events.
 *
 * Build it with `cella build`, run its tests with `npm test`, then deploy it and try
 * `curl -X POST localhost:8080/v1/entities/{{name}}/alice/deposit -d 10`.
 */

import { eventSourcedEntity, reject, schema, UINT64_MAX } from 'cella-sdk';

/** The component's export: the WIT `entity` interface. */
export const entity = eventSourcedEntity({
  // The state of a new entity; afterwards, the fold of its events with `apply`.
  initialState: { balance: 0n },
  stateSchema: schema.object({ balance: schema.uint64 }),
  // The events, as persisted (JSON) in the entity's journal.
  eventSchema: schema.variant({
    deposited: schema.object({ amount: schema.uint64 }),
    withdrawn: schema.object({ amount: schema.uint64 }),
  }),
  // The commands by name (kebab-case, as in the URL): a payload schema and a handler that
  // emits events (`ctx.emit` applies them at once, so `ctx.state` is the new state).
  commands: {
    deposit: {
      payload: schema.uint64,
      handle(state, amount, ctx) {
        if (amount === 0n) {
          reject('a deposit must be positive');
        }
        if (state.balance + amount > UINT64_MAX) {
          reject(`depositing ${amount} would overflow the balance`);
        }
        ctx.emit({ deposited: { amount } });
        return { balance: ctx.state.balance };
      },
    },
    withdraw: {
      payload: schema.uint64,
      handle(state, amount, ctx) {
        if (amount === 0n) {
          reject('a withdrawal must be positive');
        }
        if (amount > state.balance) {
          reject(`cannot withdraw ${amount}: the balance is ${state.balance}`);
        }
        ctx.emit({ withdrawn: { amount } });
        return { balance: ctx.state.balance };
      },
    },
    balance: {
      payload: schema.null,
      handle: (state) => ({ balance: state.balance }),
    },
  },
  // Folds one event into the state. Pure: it runs again whenever the state is rebuilt.
  apply(state, event) {
    if (event.deposited) {
      return { balance: state.balance + event.deposited.amount };
    }
    return { balance: state.balance - event.withdrawn.amount };
  },
});
