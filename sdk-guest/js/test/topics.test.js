/*
 * Topics through the SDK and its test kit: subscriptions declared on a definition, an
 * event-sourced entity's events topic, the topic message in the context, and broadcasts.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { eventSourcedEntity, reject, schema, valueEntity } from 'cella-sdk';
import { TestKit, keysOf } from 'cella-sdk/testing';

const inbox = valueEntity({
  initialState: { lines: [] },
  subscriptions: [
    { topic: 'news', command: 'on-news', key: { pointer: '/to' } },
    { topic: 'alerts', command: 'on-news', key: { fixed: 'ops' } },
    { topic: 'alerts', command: 'page', key: { fixed: 'ops' } },
  ],
  commands: {
    'on-news': (state, message, ctx) => {
      state.lines.push(ctx.message === null ? 'direct' : `${ctx.message.topic}@${ctx.message.offset}`);
      return message?.text ?? null;
    },
    page: (_state, _payload, ctx) => ctx.broadcast('pager', 'ring', { from: ctx.key, n: 2n ** 64n - 1n }),
    announce: {
      payload: schema.string,
      handle(_state, text, ctx) {
        ctx.publish('news', { to: ['a', 'b'], text });
        ctx.broadcast('inbox', 'clear');
        if (text === 'never') {
          reject('not this one');
        }
      },
    },
    misuse: (_state, how, ctx) => {
      if (how === 'type') {
        ctx.broadcast(1, 'c');
      } else if (how === 'command') {
        ctx.broadcast('t', undefined);
      } else {
        ctx.broadcast('t', 'c', () => 1);
      }
    },
  },
});

const log = eventSourcedEntity({
  initialState: { count: 0 },
  eventsTopic: 'log-events',
  subscriptions: [{ topic: 'news', command: 'seen', key: { fixed: 'all' } }],
  commands: {
    seen: (state, _message, ctx) => {
      ctx.emit({ seen: ctx.message?.offset ?? 0 });
      return ctx.state.count;
    },
  },
  apply: (state) => ({ count: state.count + 1 }),
});

test('describe carries the subscriptions and the events topic as the WIT has them', () => {
  assert.deepEqual(inbox.describe().subscriptions, [
    { topic: 'news', command: 'on-news', key: { tag: 'pointer', val: '/to' } },
    { topic: 'alerts', command: 'on-news', key: { tag: 'fixed', val: 'ops' } },
    { topic: 'alerts', command: 'page', key: { tag: 'fixed', val: 'ops' } },
  ]);
  assert.equal(inbox.describe().eventsTopic, undefined);
  assert.deepEqual(log.describe().subscriptions, [{ topic: 'news', command: 'seen', key: { tag: 'fixed', val: 'all' } }]);
  assert.equal(log.describe().eventsTopic, 'log-events');
  const kit = new TestKit(log);
  assert.deepEqual(kit.subscriptions, [{ topic: 'news', command: 'seen', key: { fixed: 'all' } }]);
  assert.equal(kit.eventsTopic, 'log-events');
});

test('mistakes in subscriptions or the events topic fail the definition', () => {
  const commands = { get: () => null };
  const value = (more) => () => valueEntity({ initialState: {}, commands, ...more });
  const events = (more) => () => eventSourcedEntity({ initialState: {}, commands, apply: () => {}, ...more });
  const cases = [
    [value({ subscriptions: { topic: 'news' } }), /must be an array/],
    [value({ subscriptions: ['news'] }), /expected \{ topic, command, key/],
    [value({ subscriptions: [{ topic: 'news', command: 'on-news', key: { pointer: '/to' } }] }), /names the command `on-news`/],
    [value({ subscriptions: [{ topic: 'a/b', command: 'get', key: { pointer: '/to' } }] }), /topic name/],
    [value({ subscriptions: [{ topic: '', command: 'get', key: { pointer: '/to' } }] }), /topic name/],
    [value({ subscriptions: [{ topic: 'news', command: 'get', key: '/to' }] }), /`key` must be/],
    [value({ subscriptions: [{ topic: 'news', command: 'get', key: { pointer: '/to', fixed: 'a' } }] }), /`key` must be/],
    [value({ subscriptions: [{ topic: 'news', command: 'get', key: { pointer: 'to' } }] }), /JSON pointer/],
    [value({ subscriptions: [{ topic: 'news', command: 'get', key: { fixed: 'a/b' } }] }), /entity key/],
    [value({ subscriptions: [{ topic: 'news', command: 'get', key: { fixed: '' } }] }), /entity key/],
    [value({ eventsTopic: 'events' }), /a value entity has no events/],
    [events({ eventsTopic: 'a/b' }), /`eventsTopic` must be a topic name/],
    [events({ eventsTopic: 5 }), /`eventsTopic` must be a topic name/],
  ];
  for (const [define, message] of cases) {
    assert.throws(define, (e) => e instanceof TypeError && message.test(e.message), String(message));
  }
  // The empty pointer is the whole message.
  const whole = value({ subscriptions: [{ topic: 'ids', command: 'get', key: { pointer: '' } }] })();
  assert.deepEqual(keysOf(new TestKit(whole).subscriptions[0], 'k9'), ['k9']);
});

test('keysOf resolves the pointer as the host does', () => {
  const at = (pointer) => ({ topic: 't', command: 'c', key: { pointer } });
  assert.deepEqual(keysOf(at('/a~1b/0/m~0n'), { 'a/b': [{ 'm~n': 'k' }] }), ['k']);
  assert.deepEqual(keysOf(at('/to'), { to: 1.5 }), ['1.5']);
  assert.deepEqual(keysOf(at('/to'), { to: 12345678901234567890n }), ['12345678901234567890']);
  assert.deepEqual(keysOf(at('/to'), { to: [] }), []);
  for (const message of [{ to: true }, { to: null }, { to: { k: 1 } }, { to: ['a', { k: 1 }] }, { to: 'a/b' }, { to: '' }, { other: 'a' }, 'to', null]) {
    assert.deepEqual(keysOf(at('/to'), message), [], JSON.stringify(message));
  }
  assert.deepEqual(keysOf(at('/to/01'), { to: ['a', 'b'] }), []);
  assert.deepEqual(keysOf(at('/to/1'), { to: ['a', 'b'] }), ['b']);
});

test('deliver runs the subscription with the topic message in the context', () => {
  const kit = new TestKit(inbox);
  assert.equal(kit.deliver('news', { to: 'x', text: 'hi' }), 'hi');
  assert.equal(kit.deliver('news', { text: 'again' }), 'again');
  assert.equal(kit.deliver('news', {}, { offset: 10 }), null);
  assert.equal(kit.deliver('news', {}), null);
  assert.equal(kit.handle('on-news', {}), null);
  assert.equal(kit.handle('on-news', 'x', { message: { topic: 'elsewhere', offset: 3 } }), null);
  assert.deepEqual(kit.state.lines, ['news@1', 'news@2', 'news@10', 'news@11', 'direct', 'elsewhere@3']);
});

test('several subscriptions to a topic need the command; an unknown topic is a TypeError', () => {
  const kit = new TestKit(inbox);
  assert.throws(() => kit.deliver('alerts', {}), (e) => e instanceof TypeError && /\{ command \}/.test(e.message));
  assert.equal(kit.deliver('alerts', {}, { command: 'on-news' }), null);
  assert.equal(kit.deliver('alerts', null, { command: 'page' }), null);
  assert.deepEqual(kit.state.lines, ['alerts@1']);
  assert.throws(() => kit.deliver('sports', {}), (e) => e instanceof TypeError && /no subscription to topic `sports`/.test(e.message));
});

test('an event-sourced subscriber', () => {
  const kit = new TestKit(log);
  assert.equal(kit.deliver('news', { anything: 1 }, { offset: 4 }), 1);
  assert.equal(kit.deliver('news', null), 2);
  assert.deepEqual(kit.events, [{ seen: 4 }, { seen: 5 }]);
});

test('broadcasts and publications are effects, discarded on a rejection', () => {
  const kit = new TestKit(inbox, { key: 'me' });
  kit.deliver('alerts', null, { command: 'page' });
  assert.deepEqual(kit.last.effects, [
    { kind: 'broadcast', entityType: 'pager', command: 'ring', payload: { from: 'me', n: 2n ** 64n - 1n } },
  ]);
  kit.handle('announce', 'hello');
  assert.deepEqual(kit.last.effects, [
    { kind: 'publish', topic: 'news', payload: { to: ['a', 'b'], text: 'hello' } },
    { kind: 'broadcast', entityType: 'inbox', command: 'clear', payload: null },
  ]);
  assert.throws(() => kit.handle('announce', 'never'), { kind: 'rejected', message: 'not this one' });
  assert.equal(kit.last, undefined);
});

test('misuse of broadcast is an entity error', () => {
  const kit = new TestKit(inbox);
  for (const [how, says] of [
    ['type', 'broadcast: `entityType` must be a string'],
    ['command', 'broadcast: `command` must be a string'],
    ['payload', 'cannot serialize the payload of the broadcast of `c` to t'],
  ]) {
    assert.throws(
      () => kit.handle('misuse', how),
      (e) => e.kind === 'rejected' && e.message.startsWith('entity error: ') && e.message.includes(says),
      how,
    );
  }
});
