/*
 * Unit tests of the examples against tests/tck/SPEC.md, run with the test kit: the counter and
 * the shopping cart (the same cases as the Rust examples' tests) and the two TCK models.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { INT64_MAX, INT64_MIN } from 'cella-sdk';
import { TestKit, keysOf } from 'cella-sdk/testing';

import { entity as counter } from '../examples/counter/index.js';
import { entity as cart } from '../examples/shopping-cart/index.js';
import { entity as tckEvents } from '../examples/tck-events/index.js';
import { entity as tckValue } from '../examples/tck-value/index.js';

describe('counter', () => {
  test('declares its commands', () => {
    assert.deepEqual(new TestKit(counter).commands, ['add', 'get']);
    assert.equal(new TestKit(counter).kind, 'value');
  });

  test('a new counter is zero and reading persists nothing', () => {
    const kit = new TestKit(counter);
    assert.equal(kit.handle('get'), 0);
    assert.equal(kit.sequence, 0);
    assert.equal(kit.stateJson, undefined);
  });

  test('add replies the new total', () => {
    const kit = new TestKit(counter);
    assert.equal(kit.handle('add', 5), 5);
    assert.equal(kit.handle('add', -7), -2);
    assert.equal(kit.handle('get'), -2);
    assert.deepEqual(kit.stateJson, { total: -2 });
    assert.equal(kit.sequence, 2);
  });

  test('the total is exact up to the 64-bit limits, and overflow is rejected', () => {
    const kit = new TestKit(counter);
    assert.equal(kit.handle('add', INT64_MAX), INT64_MAX);
    assert.throws(() => kit.handle('add', 1), { kind: 'rejected', message: 'adding 1 overflows' });
    assert.equal(kit.handle('get'), INT64_MAX);
    assert.equal(kit.handleJson('add', '-9223372036854775807'), 0);
    assert.equal(kit.handle('add', INT64_MIN), INT64_MIN);
    assert.throws(() => kit.handle('add', -1), { kind: 'rejected', message: 'adding -1 overflows' });
    assert.equal(kit.handleJson('add', '0'), INT64_MIN);
  });

  test('bad payloads and unknown commands fail', () => {
    const kit = new TestKit(counter);
    for (const payload of ['"five"', '1.5', 'null', '', '9223372036854775808', '[1]']) {
      assert.throws(() => kit.handleJson('add', payload), { kind: 'bad-request' }, payload);
    }
    assert.throws(() => kit.handle('get', 1), { kind: 'bad-request' });
    assert.throws(() => kit.handle('reset'), { kind: 'unknown-command', message: 'reset' });
    assert.equal(kit.sequence, 0);
  });
});

describe('shopping cart', () => {
  const add = (kit, productId, name, quantity) =>
    assert.deepEqual(kit.handle('add-item', { productId, name, quantity }), {});

  test('declares its commands', () => {
    const kit = new TestKit(cart);
    assert.deepEqual(kit.commands, ['add-item', 'remove-item', 'get-cart']);
    assert.equal(kit.kind, 'event-sourced');
    assert.equal(kit.snapshotEvery, 0);
  });

  test('publishes its events to cart-events', () => {
    const kit = new TestKit(cart);
    assert.equal(kit.eventsTopic, 'cart-events');
    assert.deepEqual(kit.subscriptions, []);
    assert.deepEqual(cart.describe().eventsTopic, 'cart-events');
  });

  test('a new cart is empty', () => {
    const kit = new TestKit(cart);
    assert.deepEqual(kit.handle('get-cart'), { items: [] });
    assert.equal(kit.sequence, 0);
  });

  test('adding items keeps insertion order', () => {
    const kit = new TestKit(cart);
    add(kit, 'socks', 'Socks', 2);
    add(kit, 'hat', 'Hat', 1);
    assert.deepEqual(kit.last.events, [{ itemAdded: { item: { productId: 'hat', name: 'Hat', quantity: 1 } } }]);
    assert.deepEqual(kit.handle('get-cart'), {
      items: [
        { productId: 'socks', name: 'Socks', quantity: 2 },
        { productId: 'hat', name: 'Hat', quantity: 1 },
      ],
    });
  });

  test('the event JSON has the fields in declaration order', () => {
    const kit = new TestKit(cart);
    kit.handle('add-item', { quantity: 2, name: 'Socks', productId: 'socks', colour: 'red' });
    assert.deepEqual(Object.keys(kit.events[0].itemAdded.item), ['productId', 'name', 'quantity']);
  });

  test('adding a product again adds to its quantity', () => {
    const kit = new TestKit(cart);
    add(kit, 'socks', 'Socks', 2);
    add(kit, 'hat', 'Hat', 1);
    add(kit, 'socks', 'Socks', 3);
    assert.deepEqual(kit.handle('get-cart'), {
      items: [
        { productId: 'socks', name: 'Socks', quantity: 5 },
        { productId: 'hat', name: 'Hat', quantity: 1 },
      ],
    });
    assert.equal(kit.sequence, 3);
  });

  test('a quantity that is not positive is rejected', () => {
    const kit = new TestKit(cart);
    for (const quantity of [0, -1]) {
      assert.throws(() => kit.handle('add-item', { productId: 'socks', name: 'Socks', quantity }), {
        kind: 'rejected',
        message: 'Quantity for item socks must be greater than zero.',
      });
    }
    assert.deepEqual(kit.events, []);
  });

  test('a quantity that would overflow is rejected', () => {
    const kit = new TestKit(cart);
    add(kit, 'socks', 'Socks', INT64_MAX);
    assert.throws(() => kit.handle('add-item', { productId: 'socks', name: 'Socks', quantity: 1 }), {
      kind: 'rejected',
      message: 'Quantity for item socks is too large.',
    });
    assert.deepEqual(kit.handle('get-cart'), { items: [{ productId: 'socks', name: 'Socks', quantity: INT64_MAX }] });
  });

  test('removing an item removes its line', () => {
    const kit = new TestKit(cart);
    add(kit, 'socks', 'Socks', 2);
    add(kit, 'hat', 'Hat', 1);
    assert.deepEqual(kit.handle('remove-item', { productId: 'socks' }), {});
    assert.deepEqual(kit.last.events, [{ itemRemoved: { productId: 'socks' } }]);
    assert.deepEqual(kit.handle('get-cart'), { items: [{ productId: 'hat', name: 'Hat', quantity: 1 }] });
  });

  test('removing an item not in the cart is rejected', () => {
    const kit = new TestKit(cart);
    add(kit, 'hat', 'Hat', 1);
    assert.throws(() => kit.handle('remove-item', { productId: 'socks' }), {
      kind: 'rejected',
      message: 'Cannot remove item socks because it is not in the cart.',
    });
    assert.equal(kit.sequence, 1);
  });

  test('a removed item added again goes last', () => {
    const kit = new TestKit(cart);
    add(kit, 'socks', 'Socks', 2);
    add(kit, 'hat', 'Hat', 1);
    kit.handle('remove-item', { productId: 'socks' });
    add(kit, 'socks', 'Socks', 1);
    assert.deepEqual(kit.handle('get-cart'), {
      items: [
        { productId: 'hat', name: 'Hat', quantity: 1 },
        { productId: 'socks', name: 'Socks', quantity: 1 },
      ],
    });
  });

  test('malformed commands are bad requests', () => {
    const kit = new TestKit(cart);
    assert.throws(() => kit.handle('add-item', { productId: 'socks', quantity: 1 }), (e) =>
      e.kind === 'bad-request' && e.message.includes('add-item') && e.message.includes('name'));
    assert.throws(() => kit.handle('add-item', { productId: 'socks', name: 'Socks', quantity: 1.5 }), { kind: 'bad-request' });
    assert.throws(() => kit.handle('add-item', { productId: 1, name: 'Socks', quantity: 1 }), { kind: 'bad-request' });
    assert.throws(() => kit.handle('remove-item', {}), { kind: 'bad-request' });
    assert.throws(() => kit.handle('get-cart', {}), { kind: 'bad-request' });
    assert.throws(() => kit.handle('checkout'), { kind: 'unknown-command', message: 'checkout' });
  });
});

const forwardTo = (key) => ({ forward: { type: 'tck-value', key, command: 'get', payload: null } });

/** The cases SPEC.md gives the two models in common; `change` is `update` or `emit`. */
function modelCases(entity, change, commands) {
  test(`declares ${commands.join(', ')}`, () => {
    assert.deepEqual(new TestKit(entity).commands, commands);
  });

  test('a new entity has the empty value and persists nothing on reads', () => {
    const kit = new TestKit(entity);
    assert.deepEqual(kit.handle('get'), { value: '' });
    assert.deepEqual(kit.handle('process', { actions: [] }), { value: '' });
    assert.equal(kit.sequence, 0);
  });

  test('a fail stops the command: rejected with its message, nothing persisted', () => {
    const kit = new TestKit(entity);
    assert.throws(
      () => kit.handle('process', { actions: [{ [change]: 'x' }, { publish: { topic: 't', payload: 1 } }, { fail: 'stop here' }] }),
      { kind: 'rejected', message: 'stop here' },
    );
    assert.deepEqual(kit.handle('get'), { value: '' });
    assert.equal(kit.sequence, 0);
  });

  test('effects are accepted and returned in order', () => {
    const kit = new TestKit(entity);
    kit.handle('process', {
      actions: [
        { call: { type: 'counter', key: 'c', command: 'add', payload: 9223372036854775807n } },
        { publish: { topic: 'news', payload: { a: [1] } } },
        { schedule: { name: 'later', delayMs: 1000, command: 'get', payload: null } },
        { call: { type: 'counter', key: 'c', command: 'get', replyTo: { command: 'on-reply', correlation: 'c1' } } },
        { call: { type: 'counter', key: 'c', command: 'get', payload: 1, replyTo: null } },
        { schedule: { name: 'tick', delayMs: 0, command: 'get', everyMs: 100 } },
        { schedule: { name: 'once', delayMs: 5, command: 'get', payload: 2, everyMs: null } },
        { publish: { topic: 'no-payload' } },
        { cancel: 'later' },
        { broadcast: { type: 'tck-events', command: 'get', payload: { b: 2 } } },
        { broadcast: { type: 'tck-value', command: 'get' } },
      ],
    });
    assert.deepEqual(kit.last.effects, [
      { kind: 'call', entityType: 'counter', key: 'c', command: 'add', payload: 9223372036854775807n },
      { kind: 'publish', topic: 'news', payload: { a: [1] } },
      { kind: 'schedule', name: 'later', delayMs: 1000, command: 'get', payload: null },
      {
        kind: 'call',
        entityType: 'counter',
        key: 'c',
        command: 'get',
        payload: null,
        replyTo: 'on-reply',
        correlation: 'c1',
      },
      { kind: 'call', entityType: 'counter', key: 'c', command: 'get', payload: 1 },
      { kind: 'schedule', name: 'tick', delayMs: 0, command: 'get', payload: null, everyMs: 100 },
      { kind: 'schedule', name: 'once', delayMs: 5, command: 'get', payload: 2 },
      { kind: 'publish', topic: 'no-payload', payload: null },
      { kind: 'cancel', name: 'later' },
      { kind: 'broadcast', entityType: 'tck-events', command: 'get', payload: { b: 2 } },
      { kind: 'broadcast', entityType: 'tck-value', command: 'get', payload: null },
    ]);
    assert.equal(kit.last.persisted, false);
  });

  test('a forward is returned and the changes before it persist', () => {
    const kit = new TestKit(entity);
    kit.handle('process', { actions: [{ [change]: 'a' }, forwardTo('other')] });
    assert.deepEqual(kit.last.forward, { entityType: 'tck-value', key: 'other', command: 'get', payload: null });
    assert.equal(kit.last.persisted, true);
    assert.deepEqual(kit.handle('get'), { value: 'a' });
  });

  test('a second forward is an entity error, unless a fail comes first', () => {
    const kit = new TestKit(entity);
    assert.throws(() => kit.handle('process', { actions: [forwardTo('a'), forwardTo('b')] }), {
      kind: 'rejected',
      message: 'entity error: forward called more than once',
    });
    assert.throws(() => kit.handle('process', { actions: [forwardTo('a'), forwardTo('b'), { fail: 'first' }] }), {
      kind: 'rejected',
      message: 'first',
    });
    assert.equal(kit.sequence, 0);
  });

  test('payloads that do not fit are bad requests', () => {
    const kit = new TestKit(entity);
    const others = change === 'update' ? ['emit'] : ['update', 'append'];
    for (const payload of [
      ...others.map((other) => ({ actions: [{ [other]: 'x' }] })),
      null,
      [],
      {},
      { actions: {} },
      { actions: [{}] },
      { actions: [{ [change]: 1 }] },
      { actions: [{ [change]: 'x', fail: 'y' }] },
      { actions: [{ forward: { type: 't', key: 'k' } }] },
      { actions: [{ call: { type: 1, key: 'k', command: 'c' } }] },
      { actions: [{ schedule: { name: 'n', delayMs: -1, command: 'c', payload: null } }] },
      { actions: [{ publish: { topic: 1, payload: null } }] },
      { actions: [{ schedule: { name: 'n', delayMs: 1.5, command: 'c' } }] },
      { actions: [{ schedule: { name: 'n', command: 'c' } }] },
      { actions: [{ schedule: { name: 'n', delayMs: 1, command: 'c', everyMs: -1 } }] },
      { actions: [{ schedule: { name: 'n', delayMs: 1, command: 'c', everyMs: '1' } }] },
      { actions: [{ cancel: 1 }] },
      { actions: [{ cancel: { name: 'n' } }] },
      { actions: [{ call: { type: 't', key: 'k', command: 'c', replyTo: 'on-reply' } }] },
      { actions: [{ call: { type: 't', key: 'k', command: 'c', replyTo: { command: 'on-reply' } } }] },
      { actions: [{ call: { type: 't', key: 'k', command: 'c', replyTo: { correlation: 'x' } } }] },
      { actions: [{ broadcast: 'tck-value' }] },
      { actions: [{ broadcast: { type: 'tck-value' } }] },
      { actions: [{ broadcast: { type: 'tck-value', command: 1 } }] },
      { actions: [{ broadcast: { key: 'k', command: 'get' } }] },
      // Checked before anything runs: a fail first does not hide a bad action after it.
      { actions: [{ fail: 'x' }, { explode: 1 }] },
    ]) {
      assert.throws(() => kit.handle('process', payload), { kind: 'bad-request' }, JSON.stringify(payload));
    }
    assert.throws(() => kit.handle('get', {}), { kind: 'bad-request' });
    assert.throws(() => kit.handle('context', 1), { kind: 'bad-request' });
    assert.throws(() => kit.handle('nope'), { kind: 'unknown-command', message: 'nope' });
  });

  test('context replies the command context and persists nothing', () => {
    const kit = new TestKit(entity, { entityType: 'tck', key: 'k1' });
    kit.handle('process', { actions: [{ [change]: 'v' }] });
    const reply = kit.handle('context');
    assert.deepEqual(Object.keys(reply), ['entityType', 'key', 'command', 'commandId', 'sequence', 'timestampMs', 'randomSeed']);
    assert.deepEqual(
      { ...reply, randomSeed: undefined },
      {
        entityType: 'tck',
        key: 'k1',
        command: 'context',
        commandId: 'test-command-2',
        sequence: 1,
        timestampMs: TestKit.DEFAULT_TIME_MS,
        randomSeed: undefined,
      },
    );
    // 2 * 0x9e3779b97f4a7c15 mod 2^64: beyond 2^53, so exact as a BigInt.
    assert.equal(reply.randomSeed, (2n * 0x9e3779b97f4a7c15n) % 2n ** 64n);
    assert.equal(kit.sequence, 1);
  });

  test('on-message appends topic@offset:text; for each message delivered', () => {
    const kit = new TestKit(entity);
    kit.handle('process', { actions: [{ [change]: 'v:' }] });
    let value = 'v:';
    for (const [message, entry] of [
      [{ to: 'k1', text: 'hello' }, 'tck-news@1:hello;'],
      [{ to: ['k1', 'k2'], text: '' }, 'tck-news@2:;'],
      [{ to: 7, text: 'a;b@c' }, 'tck-news@3:a;b@c;'],
    ]) {
      value += entry;
      assert.deepEqual(kit.deliver('tck-news', message), { value });
      assert.deepEqual(kit.handle('get'), { value });
    }
    const offset = 2 ** 53 + 2;
    value += `other@${offset}:x;`;
    assert.deepEqual(kit.handle('on-message', { text: 'x' }, { message: { topic: 'other', offset } }), { value });
    assert.equal(kit.sequence, 5);
  });

  test('on-message of anything else, or not delivered from a topic, is a bad request', () => {
    const kit = new TestKit(entity);
    for (const payload of [null, 'hi', { to: 'k1' }, { to: 'k1', text: 1 }, []]) {
      assert.throws(() => kit.deliver('tck-news', payload), { kind: 'bad-request' }, JSON.stringify(payload));
    }
    assert.throws(() => kit.handle('on-message', { to: 'k1', text: 'x' }), { kind: 'bad-request' });
    assert.equal(kit.sequence, 0);
  });
}

describe('tck-value', () => {
  modelCases(tckValue, 'update', ['process', 'get', 'context', 'on-reply', 'on-message']);

  test('subscribes to tck-news by the pointer /to', () => {
    const kit = new TestKit(tckValue);
    assert.deepEqual(kit.subscriptions, [{ topic: 'tck-news', command: 'on-message', key: { pointer: '/to' } }]);
    assert.equal(kit.eventsTopic, undefined);
    assert.deepEqual(tckValue.describe().subscriptions, [
      { topic: 'tck-news', command: 'on-message', key: { tag: 'pointer', val: '/to' } },
    ]);
    const [subscription] = kit.subscriptions;
    assert.deepEqual(keysOf(subscription, { to: 'a', text: '' }), ['a']);
    assert.deepEqual(keysOf(subscription, { to: ['a', 7] }), ['a', '7']);
    assert.deepEqual(keysOf(subscription, { text: 'no one' }), []);
  });

  test('append appends to the working value', () => {
    const kit = new TestKit(tckValue);
    assert.deepEqual(kit.handle('process', { actions: [{ append: 'a' }, { append: 'b' }] }), { value: 'ab' });
    assert.deepEqual(kit.handle('process', { actions: [{ update: 'x' }, { append: 'y' }] }), { value: 'xy' });
    assert.deepEqual(kit.handle('process', { actions: [{ append: '' }] }), { value: 'xy' });
    assert.equal(kit.sequence, 2);
  });

  test('on-reply appends the outcome of a call and persists', () => {
    const kit = new TestKit(tckValue);
    kit.handle('process', { actions: [{ update: 'v:' }] });
    const replies = [
      [{ ok: { value: 'x' } }, 'c1:ok:x;'],
      [{ ok: { value: 5 } }, 'c2:ok:;'],
      [{ ok: null }, 'c3:ok:;'],
      [{ ok: ['value'] }, 'c4:ok:;'],
      [{ error: { code: 'rejected', message: 'no: way' } }, 'c5:rejected:no: way;'],
    ];
    let expected = 'v:';
    replies.forEach(([payload, appended], i) => {
      expected += appended;
      assert.deepEqual(kit.handle('on-reply', payload, { correlation: `c${i + 1}` }), { value: expected });
      assert.deepEqual(kit.stateJson, { value: expected });
    });
    assert.equal(kit.sequence, 6);
    kit.handle('on-reply', { ok: { value: 'z' } }, { correlation: '' });
    assert.ok(kit.handle('get').value.endsWith(';:ok:z;'));
  });

  test('on-reply without a correlation or with another payload is a bad request', () => {
    const kit = new TestKit(tckValue);
    for (const payload of [
      null,
      {},
      { ok: 1, error: { code: 'c', message: 'm' } },
      { error: { code: 'c' } },
      { error: { code: 'c', message: 1 } },
      { error: 'rejected' },
      { value: 'x' },
    ]) {
      assert.throws(() => kit.handle('on-reply', payload, { correlation: 'c' }), { kind: 'bad-request' }, JSON.stringify(payload));
    }
    assert.throws(() => kit.handle('on-reply', { ok: { value: 'x' } }), { kind: 'bad-request' });
    assert.throws(() => kit.handle('on-reply', { ok: { value: 'x' } }, { timer: 't' }), { kind: 'bad-request' });
    assert.equal(kit.sequence, 0);
  });

  test('updates run in order; the state persists only when it changes', () => {
    const kit = new TestKit(tckValue);
    assert.deepEqual(kit.handle('process', { actions: [{ update: 'a' }, { update: 'b' }] }), { value: 'b' });
    assert.equal(kit.sequence, 1);
    assert.deepEqual(kit.stateJson, { value: 'b' });
    assert.deepEqual(kit.handle('process', { actions: [{ update: 'c' }, { update: 'b' }] }), { value: 'b' });
    assert.equal(kit.last.persisted, false);
    assert.equal(kit.sequence, 1);
  });
});

describe('tck-events', () => {
  modelCases(tckEvents, 'emit', ['process', 'get', 'context', 'on-message']);

  test('subscribes to tck-news as the entity all, and publishes its events to tck-events-log', () => {
    const kit = new TestKit(tckEvents);
    assert.deepEqual(kit.subscriptions, [{ topic: 'tck-news', command: 'on-message', key: { fixed: 'all' } }]);
    assert.deepEqual(keysOf(kit.subscriptions[0], { to: 'k1' }), ['all']);
    assert.equal(kit.eventsTopic, 'tck-events-log');
    assert.deepEqual(tckEvents.describe().subscriptions, [
      { topic: 'tck-news', command: 'on-message', key: { tag: 'fixed', val: 'all' } },
    ]);
    assert.equal(tckEvents.describe().eventsTopic, 'tck-events-log');
  });

  test('on-message emits an event', () => {
    const kit = new TestKit(tckEvents);
    kit.handle('process', { actions: [{ emit: 'a' }] });
    assert.deepEqual(kit.deliver('tck-news', { text: 't' }, { offset: 9 }), { value: 'atck-news@9:t;' });
    assert.deepEqual(kit.last.events, [{ appended: 'tck-news@9:t;' }]);
    assert.deepEqual(kit.deliver('tck-news', { text: 'u' }), { value: 'atck-news@9:t;tck-news@10:u;' });
  });

  test('has no on-reply', () => {
    const kit = new TestKit(tckEvents);
    assert.throws(() => kit.handle('on-reply', { ok: null }, { correlation: 'c' }), { kind: 'unknown-command' });
  });

  test('emits append to the working state, which later actions and the reply see', () => {
    const kit = new TestKit(tckEvents);
    assert.deepEqual(kit.handle('process', { actions: [{ emit: 'a' }, { emit: 'b' }] }), { value: 'ab' });
    assert.deepEqual(kit.last.events, [{ appended: 'a' }, { appended: 'b' }]);
    assert.deepEqual(kit.handle('process', { actions: [{ emit: 'c' }] }), { value: 'abc' });
    assert.deepEqual(kit.events, [{ appended: 'a' }, { appended: 'b' }, { appended: 'c' }]);
    assert.deepEqual(kit.stateJson, { value: 'abc' });
    assert.equal(kit.sequence, 2);
  });
});
