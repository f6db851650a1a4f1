/*
 * Calls with a reply route, repeating timers and cancels through the test kit: an entity that
 * transfers money and hears back, and one that ticks until it has counted enough.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { badRequest, schema, valueEntity } from 'cella-sdk';
import { TestKit } from 'cella-sdk/testing';

const transfers = valueEntity({
  initialState: { pending: [], done: [], failed: [], balance: 0n },
  stateSchema: schema.object({
    pending: schema.array(schema.string),
    done: schema.array(schema.string),
    failed: schema.array(schema.string),
    balance: schema.int64,
  }),
  commands: {
    send: {
      payload: schema.int64,
      handle(state, amount, ctx) {
        const transfer = `t${state.pending.length + state.done.length + state.failed.length + 1}`;
        state.pending.push(transfer);
        ctx.call('account', 'bob', 'credit', amount, { replyTo: 'credited', correlation: transfer });
      },
    },
    credited: {
      payload: schema.callReply(schema.int64),
      handle(state, outcome, ctx) {
        if (ctx.correlation === null) {
          badRequest('`credited` is the reply route of `credit`');
        }
        state.pending = state.pending.filter((t) => t !== ctx.correlation);
        if ('error' in outcome) {
          state.failed.push(`${ctx.correlation}:${outcome.error.code}:${outcome.error.message}`);
        } else {
          state.balance = outcome.ok;
          state.done.push(ctx.correlation);
        }
        return ctx.correlation;
      },
    },
  },
});

const ticker = valueEntity({
  initialState: { ticks: 0 },
  commands: {
    start: {
      payload: schema.integer,
      handle(_state, everyMs, ctx) {
        ctx.schedule('tick', everyMs, 'tick', null, { everyMs });
      },
    },
    tick: {
      payload: schema.null,
      handle(state, _payload, ctx) {
        state.ticks += 1;
        if (state.ticks === 3 && ctx.timer !== null) {
          ctx.cancel(ctx.timer);
        }
        return ctx.timer;
      },
    },
  },
});

test('a call with a reply route, and its replies', () => {
  const kit = new TestKit(transfers);
  kit.handle('send', 5);
  assert.deepEqual(kit.last.effects, [
    { kind: 'call', entityType: 'account', key: 'bob', command: 'credit', payload: 5, replyTo: 'credited', correlation: 't1' },
  ]);
  assert.equal(kit.handle('credited', { ok: 105 }, { correlation: 't1' }), 't1');
  assert.deepEqual(kit.state, { pending: [], done: ['t1'], failed: [], balance: 105n });
  kit.handle('send', 7);
  kit.handle('credited', { error: { code: 'rejected', message: 'account closed' } }, { correlation: 't2' });
  assert.deepEqual(kit.state.failed, ['t2:rejected:account closed']);
  kit.handleJson('send', '1');
  kit.handleJson('credited', '{"ok": 9223372036854775807}', { correlation: 't3' });
  assert.equal(kit.state.balance, 9223372036854775807n);
});

test('a reply route checks its payload and its correlation', () => {
  const kit = new TestKit(transfers);
  kit.handle('send', 5);
  for (const payload of [5, { ok: '5' }, { error: 'no' }, { ok: 1, error: null }, null]) {
    assert.throws(() => kit.handle('credited', payload, { correlation: 't1' }), { kind: 'bad-request' }, JSON.stringify(payload));
  }
  assert.throws(() => kit.handle('credited', { ok: 1 }), { kind: 'bad-request' });
  assert.deepEqual(kit.state.pending, ['t1']);
});

test('a repeating timer and its cancel', () => {
  const kit = new TestKit(ticker);
  kit.handle('start', 250);
  assert.deepEqual(kit.last.effects, [
    { kind: 'schedule', name: 'tick', delayMs: 250, command: 'tick', payload: null, everyMs: 250 },
  ]);
  assert.equal(kit.handle('tick', null, { timer: 'tick' }), 'tick');
  assert.equal(kit.handle('tick', null, { timer: 'tick' }), 'tick');
  assert.deepEqual(kit.last.effects, []);
  assert.equal(kit.handle('tick', null, { timer: 'tick' }), 'tick');
  assert.deepEqual(kit.last.effects, [{ kind: 'cancel', name: 'tick' }]);
  assert.equal(kit.handle('tick'), null);
  assert.equal(kit.state.ticks, 4);
});
