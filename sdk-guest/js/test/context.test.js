/*
 * Unit tests of the command context (src/context.js): the host's facts, the deterministic
 * random sequence, effects in order, and misuse recorded rather than thrown.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ValueContext } from 'cella-sdk';

function context(seed = 0n, extra = {}) {
  return new ValueContext(
    {
      entityType: 'counter',
      key: 'k1',
      commandId: 'c-1',
      command: 'add',
      timestampMs: 1000n,
      randomSeed: seed,
      sequence: 7n,
      ...extra,
    },
    { total: 0 },
  );
}

test('exposes the host context, u64 times and sequences as numbers', () => {
  const ctx = context(2n ** 64n - 1n);
  assert.deepEqual(
    [ctx.entityType, ctx.key, ctx.commandId, ctx.command, ctx.timestampMs, ctx.sequence, ctx.randomSeed],
    ['counter', 'k1', 'c-1', 'add', 1000, 7, 2n ** 64n - 1n],
  );
  assert.equal(ctx.correlation, null);
  assert.equal(ctx.timer, null);
});

test('exposes the correlation of a reply and the timer that fired the command', () => {
  assert.equal(context(0n, { correlation: 't1' }).correlation, 't1');
  assert.equal(context(0n, { correlation: '' }).correlation, '');
  assert.equal(context(0n, { correlation: 't1' }).timer, null);
  assert.equal(context(0n, { timer: 'tick' }).timer, 'tick');
  assert.equal(context(0n, { correlation: undefined, timer: undefined }).timer, null);
});

test('calls with a reply route, repeating timers and cancels', () => {
  const ctx = context();
  ctx.call('bank', 'b1', 'credit', 5, { replyTo: 'credited', correlation: 't1' });
  ctx.call('bank', 'b1', 'credit', 6, { replyTo: 'credited' });
  ctx.call('bank', 'b1', 'credit', 7, {});
  ctx.schedule('tick', 0, 'tick', null, { everyMs: 1000 });
  ctx.schedule('big', 1n, 'tick', undefined, { everyMs: 2n ** 64n - 1n });
  ctx.schedule('once', 10, 'tick', { n: 1 }, { everyMs: undefined });
  ctx.cancel('tick');
  const done = ctx._finish();
  assert.equal(done.error, undefined);
  const target = { entityType: 'bank', key: 'b1' };
  assert.deepEqual(done.effects, [
    { tag: 'call', val: { target, command: 'credit', payload: '5', replyTo: { command: 'credited', correlation: 't1' } } },
    { tag: 'call', val: { target, command: 'credit', payload: '6', replyTo: { command: 'credited', correlation: '' } } },
    { tag: 'call', val: { target, command: 'credit', payload: '7' } },
    { tag: 'schedule', val: { name: 'tick', delayMs: 0n, command: 'tick', payload: 'null', everyMs: 1000n } },
    { tag: 'schedule', val: { name: 'big', delayMs: 1n, command: 'tick', payload: 'null', everyMs: 2n ** 64n - 1n } },
    { tag: 'schedule', val: { name: 'once', delayMs: 10n, command: 'tick', payload: '{"n":1}' } },
    { tag: 'cancel', val: 'tick' },
  ]);
  assert.equal(done.forward, undefined);
});

test('randomness is splitmix64 of the seed, as in the Rust SDK', () => {
  const ctx = context(0n);
  assert.equal(ctx.randomU64(), 0xe220a8397b1dcdafn);
  assert.equal(ctx.randomU64(), 0x6e789e6aa1b965f4n);
  const [a, b] = [context(42n), context(42n)];
  const draws = (c) => [c.random(), c.random(), c.randomU64()];
  assert.deepEqual(draws(a), draws(b));
  const x = context(7n).random();
  assert.ok(x >= 0 && x < 1);
});

test('collects effects in order, payloads as JSON text', () => {
  const ctx = context();
  ctx.call('cart', 'c1', 'add-item', { productId: 'p' });
  ctx.publish('totals', 5n);
  ctx.schedule('expire', 60000, 'expire');
  ctx.forward('other', 'k2', 'get');
  const done = ctx._finish();
  assert.equal(done.error, undefined);
  assert.deepEqual(done.effects, [
    { tag: 'call', val: { target: { entityType: 'cart', key: 'c1' }, command: 'add-item', payload: '{"productId":"p"}' } },
    { tag: 'publish', val: { topic: 'totals', payload: '5' } },
    { tag: 'schedule', val: { name: 'expire', delayMs: 60000n, command: 'expire', payload: 'null' } },
  ]);
  assert.deepEqual(done.forward, { target: { entityType: 'other', key: 'k2' }, command: 'get', payload: 'null' });
});

test('misuse is recorded, the first one wins, and nothing throws', () => {
  const twice = context();
  twice.forward('a', '1', 'get');
  twice.forward('b', '2', 'get');
  assert.equal(twice._finish().error, 'forward called more than once');

  const cyclic = context();
  const payload = {};
  payload.self = payload;
  cyclic.publish('t', payload);
  cyclic.call('a', 1, 'get');
  assert.match(cyclic._finish().error, /^cannot serialize the payload of the publication to `t`: /);

  const noJson = context();
  noJson.call('a', 'b', 'c', () => 1);
  assert.equal(noJson._finish().error, 'cannot serialize the payload of the command `c` to a/b: it has no JSON form');

  const badKey = context();
  badKey.call('a', 1, 'get');
  assert.equal(badKey._finish().error, 'call: `key` must be a string, not number');

  const badDelay = context();
  badDelay.schedule('t', -1, 'c');
  badDelay.schedule('t', 1.5, 'c');
  assert.equal(badDelay._finish().error, 'schedule: the delay of timer `t` is not a whole number of milliseconds');

  const badPeriod = context();
  badPeriod.schedule('t', 1, 'c', null, { everyMs: -1 });
  badPeriod.schedule('t', 1, 'c', null, { everyMs: '5' });
  assert.equal(badPeriod._finish().error, 'schedule: the period of timer `t` is not a whole number of milliseconds');
  assert.equal(badPeriod._finish().effects.length, 0);

  const badCancel = context();
  badCancel.cancel(1);
  assert.equal(badCancel._finish().error, 'cancel: `name` must be a string, not number');

  const badRoute = context();
  badRoute.call('a', 'b', 'c', null, { replyTo: 1 });
  assert.equal(badRoute._finish().error, 'call: `replyTo` must be a string, not number');
  assert.equal(badRoute._finish().effects.length, 0);

  const badCorrelation = context();
  badCorrelation.call('a', 'b', 'c', null, { replyTo: 'r', correlation: 5 });
  assert.equal(badCorrelation._finish().error, 'call: `correlation` must be a string, not number');

  const noRoute = context();
  noRoute.call('a', 'b', 'c', null, { correlation: 't1' });
  assert.equal(noRoute._finish().error, 'call: a `correlation` needs a `replyTo` command');

  const badOptions = context();
  badOptions.call('a', 'b', 'c', null, 'credited');
  badOptions.schedule('t', 1, 'c', null, 5);
  assert.match(badOptions._finish().error, /^call: the options must be an object/);
});

test('the value context exposes and replaces the working state', () => {
  const ctx = context();
  ctx.state.total = 3;
  assert.deepEqual(ctx.state, { total: 3 });
  ctx.state = { total: 4 };
  assert.deepEqual(ctx.state, { total: 4 });
});
