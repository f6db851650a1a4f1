/*
 * Unit tests of crdt entities' definitions, typed handles and export glue (src/crdt.js,
 * src/glue.js, the crdt context), and of ephemeral value entities: the WIT descriptor and
 * outcome, the operations each handle records, reads that reflect the command's own
 * operations, misuse, consistency and refused effects.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  CrdtContext,
  GCounter,
  ORMap,
  canonicalJson,
  crdtEntity,
  eventSourcedEntity,
  schema as s,
  valueEntity,
} from 'cella-sdk';
import { CommandFailure, TestKit } from 'cella-sdk/testing';

const enc = (text) => new TextEncoder().encode(text);
const witContext = (command) => ({
  entityType: 't',
  key: 'k',
  commandId: 'c',
  command,
  timestampMs: 5n,
  randomSeed: 1n,
  sequence: 0n,
});

/** Runs `body(data, ctx)` as a command of a crdt entity of `type` on `value` (JSON text). */
function run(type, value, body) {
  const entity = crdtEntity({ type, commands: { go: (data, _payload, ctx) => body(data, ctx) } });
  return entity.handle(witContext('go'), value === undefined ? undefined : enc(value), 'null');
}

/** The WIT outcome of `run`, which must succeed. */
function outcome(type, value, body) {
  const result = run(type, value, body);
  if (result.tag !== 'ok') {
    assert.fail(`the command failed: ${result.val.tag}: ${result.val.val}`);
  }
  return result.val;
}

test('a crdt entity describes itself with its type and durability', () => {
  const entity = crdtEntity({ type: 'or-set', durability: 'ephemeral', commands: { a: () => 1, b: () => 2 } });
  assert.deepEqual(entity.describe(), {
    kind: 'crdt',
    commands: ['a', 'b'],
    snapshotEvery: 0,
    subscriptions: [],
    eventsTopic: undefined,
    durability: 'ephemeral',
    crdt: 'or-set',
  });
  assert.equal(crdtEntity({ type: 'vote', commands: {} }).describe().durability, 'durable');
  const kit = new TestKit(entity);
  assert.deepEqual([kit.kind, kit.crdtType, kit.durability], ['crdt', 'or-set', 'ephemeral']);
});

test('crdt definitions are checked when the module loads', () => {
  const cases = [
    [{ commands: {} }, /`type` must be a crdt type, one of g-counter, pn-counter/],
    [{ type: 'counter', commands: {} }, /`type` must be a crdt type/],
    [{ type: 'flag' }, /`commands` must be an object/],
    [{ type: 'flag', commands: { a: 1 } }, /command `a` must be a function or \{ payload\?: schema, handle\(data, payload, ctx\) \}/],
    [{ type: 'flag', initialState: false, commands: {} }, /a crdt entity has no `initialState`/],
    [{ type: 'flag', apply: () => 1, commands: {} }, /a crdt entity has no `apply`/],
    [{ type: 'flag', durability: 'volatile', commands: {} }, /`durability` must be 'durable' or 'ephemeral'/],
    [
      { type: 'flag', commands: { on: () => 1 }, subscriptions: [{ topic: 't', command: 'on', key: { fixed: 'k' } }] },
      /a crdt entity cannot subscribe to topics/,
    ],
  ];
  for (const [definition, message] of cases) {
    assert.throws(() => crdtEntity(definition), (e) => e instanceof TypeError && message.test(e.message), String(message));
  }
  assert.throws(
    () => eventSourcedEntity({ initialState: 0, durability: 'ephemeral', apply: () => 0, commands: {} }),
    /an event-sourced entity cannot be ephemeral/,
  );
});

test('the WIT outcome of a crdt command: operations, consistency, no state', () => {
  const val = outcome('pn-counter', '4', (data, ctx) => {
    data.increment(2);
    data.decrement();
    ctx.consistency = 'all';
    return data.value;
  });
  assert.deepEqual(val, {
    events: [],
    state: undefined,
    reply: '5',
    forward: undefined,
    effects: [],
    crdtOps: [
      { path: [], action: { tag: 'increment', val: 2n }, creates: undefined },
      { path: [], action: { tag: 'decrement', val: 1n }, creates: undefined },
    ],
    consistency: 'all',
  });
  const entity = crdtEntity({ type: 'flag', commands: {} });
  assert.deepEqual(entity.apply(undefined, enc('{}')), { tag: 'err', val: 'a crdt entity has no events' });
  assert.deepEqual(entity.renderEvent(enc('{}')), { tag: 'err', val: 'a crdt entity has no events' });
  assert.deepEqual(entity.renderState(enc('true')), { tag: 'ok', val: 'true' });
});

test('a command without a value sees its type empty; reads change nothing', () => {
  const empties = {
    'g-counter': 0,
    'pn-counter': 0,
    'g-set': [],
    'or-set': [],
    'lww-register': null,
    flag: false,
    'or-map': {},
    vote: { votes_for: 0, voters: 0, majority: false },
  };
  for (const [type, empty] of Object.entries(empties)) {
    const val = outcome(type, undefined, (data) => {
      assert.equal(data.type, type);
      assert.deepEqual(data.path, []);
      assert.equal(data.exists, true);
      return data.value;
    });
    assert.deepEqual(JSON.parse(val.reply), empty, type);
    assert.deepEqual(val.crdtOps, []);
    assert.equal(val.consistency, 'local');
  }
});

test('counters: values with the command increments, exact beyond 2^53', () => {
  const val = outcome('g-counter', '9007199254740991', (data) => {
    assert.ok(data instanceof GCounter);
    assert.equal(data.value, 9007199254740991);
    data.increment(2n);
    assert.equal(data.value, 9007199254740993n);
    assert.equal('decrement' in data, false);
    return data.value;
  });
  assert.equal(val.reply, '9007199254740993');
  assert.deepEqual(val.crdtOps[0].action, { tag: 'increment', val: 2n });
  const down = outcome('pn-counter', '1', (data) => {
    data.decrement(3);
    return data.value;
  });
  assert.equal(down.reply, '-2');
});

test('sets: elements sorted by canonical JSON text, adds and removes reflected', () => {
  const val = outcome('or-set', '["b",{"a":1,"b":2}]', (data) => {
    data.add({ b: 2, a: 1 }); // already there, in another key order
    data.add(1);
    data.add('\u{1F600}');
    data.add('\uFFFD');
    assert.equal(data.has({ a: 1, b: 2 }), true);
    data.remove('b');
    assert.equal(data.has('b'), false);
    assert.equal(data.size, 4);
    return data.elements;
  });
  // `"…"` < `1` < `{…}`: canonical texts in code point order (U+FFFD before U+1F600).
  assert.deepEqual(JSON.parse(val.reply), ['\uFFFD', '\u{1F600}', 1, { a: 1, b: 2 }]);
  assert.deepEqual(
    val.crdtOps.map((op) => op.action),
    [
      { tag: 'add', val: '{"a":1,"b":2}' },
      { tag: 'add', val: '1' },
      { tag: 'add', val: '"\u{1F600}"' },
      { tag: 'add', val: '"\uFFFD"' },
      { tag: 'remove', val: '"b"' },
    ],
  );
  const cleared = outcome('or-set', '[1,2]', (data) => {
    data.clear();
    return data.size;
  });
  assert.equal(cleared.reply, '0');
  const grow = outcome('g-set', '[]', (data) => {
    assert.equal('remove' in data, false);
    data.add([3, { z: null, y: 1 }]);
    return data.value;
  });
  assert.deepEqual(grow.crdtOps[0].action, { tag: 'add', val: '[3,{"y":1,"z":null}]' });
  assert.equal(grow.reply, '[[3,{"y":1,"z":null}]]');
  assert.equal(canonicalJson({ b: [1n << 70n], a: 'x' }), '{"a":"x","b":[1180591620717411303424]}');
});

test('register, flag and vote', () => {
  const register = outcome('lww-register', 'null', (data) => {
    data.set({ n: 1 });
    return data.value;
  });
  assert.deepEqual(register.crdtOps[0].action, { tag: 'set', val: '{"n":1}' });
  assert.equal(register.reply, '{"n":1}');

  const flag = outcome('flag', 'false', (data) => {
    data.enable();
    const on = data.enabled;
    data.clear();
    return [on, data.value];
  });
  assert.equal(flag.reply, '[true,false]');
  assert.deepEqual(flag.crdtOps.map((op) => op.action), [{ tag: 'enable' }, { tag: 'clear' }]);

  const first = outcome('vote', undefined, (data) => {
    data.vote(true);
    return [data.votesFor, data.voters, data.majority];
  });
  assert.equal(first.reply, '[1,1,true]');
  // Others have voted: whether this node's vote is among them is not known, the view stays.
  const later = outcome('vote', '{"votes_for":1,"voters":2,"majority":false}', (data) => {
    data.vote(true);
    return data.value;
  });
  assert.equal(later.reply, '{"votes_for":1,"voters":2,"majority":false}');
  assert.deepEqual(later.crdtOps[0].action, { tag: 'vote', val: true });
});

test('or-map handles: nested paths, creates set to the handle type, keys and deletes reflected', () => {
  const val = outcome('or-map', '{"hits":{"home":2},"old":true}', (data) => {
    assert.ok(data instanceof ORMap);
    const home = data.orMap('hits').gCounter('home');
    assert.deepEqual([home.path, home.type, home.exists, home.value], [['hits', 'home'], 'g-counter', true, 2]);
    home.increment();
    data.orMap('a').orMap('b').gSet('tags').add('x');
    data.get('reg', 'lww-register').set([1]);
    data.vote('v').vote(false);
    data.flag('f').disable();
    data.pnCounter('p').decrement(1);
    data.orSet('o').remove('nothing');
    data.delete('old');
    assert.equal(data.flag('zz').exists, false);
    return { value: data.value, keys: data.keys, size: data.size, has: [data.has('old'), data.has('a')] };
  });
  assert.deepEqual(JSON.parse(val.reply), {
    value: {
      hits: { home: 3 },
      a: { b: { tags: ['x'] } },
      reg: [1],
      v: { votes_for: 0, voters: 1, majority: false },
      f: false,
      p: -1,
      o: [],
    },
    keys: ['a', 'f', 'hits', 'o', 'p', 'reg', 'v'],
    size: 7,
    has: [false, true],
  });
  assert.deepEqual(
    val.crdtOps.map(({ path, creates }) => [path, creates]),
    [
      [['hits', 'home'], 'g-counter'],
      [['a', 'b', 'tags'], 'g-set'],
      [['reg'], 'lww-register'],
      [['v'], 'vote'],
      [['f'], 'flag'],
      [['p'], 'pn-counter'],
      [['o'], 'or-set'],
      [[], undefined],
    ],
  );
  const cleared = outcome('or-map', '{"a":{"b":1}}', (data) => {
    data.orMap('a').clear();
    const inner = data.orMap('a').value;
    data.clear();
    return [inner, data.value];
  });
  assert.equal(cleared.reply, '[{},{}]');
  assert.deepEqual(cleared.crdtOps.map((op) => [op.path, op.creates]), [[['a'], 'or-map'], [[], undefined]]);
});

test('a handle of another type is not checked: the operation goes to the host', () => {
  const val = outcome('or-map', '{"n":1}', (data) => {
    data.flag('n').enable();
    return data.flag('n').value;
  });
  assert.deepEqual(val.crdtOps, [{ path: ['n'], action: { tag: 'enable' }, creates: 'flag' }]);
  assert.equal(val.reply, 'false');
});

test('misuse of a handle fails the command as an entity error', () => {
  const cases = [
    [(d) => d.pnCounter('c').increment(-1), /^entity error: pn-counter at \["c"\]: increment takes an integer from 0 to 2\^64 - 1, not -1$/],
    [(d) => d.gCounter('c').increment(1.5), /increment takes an integer/],
    [(d) => d.gCounter('c').increment(1n << 64n), /increment takes an integer/],
    [(d) => d.orSet('s').add(undefined), /^entity error: or-set at \["s"\]: the element has no JSON form$/],
    [(d) => d.lwwRegister('r').set(() => 1), /the value has no JSON form/],
    [(d) => d.vote('v').vote('yes'), /^entity error: vote at \["v"\]: a vote is a boolean, not "yes"$/],
    [(d) => d.delete(1), /^entity error: or-map: a key to delete must be a string/],
    [(_d, ctx) => (ctx.consistency = 'most'), /^entity error: consistency must be one of 'local', 'majority', 'all', not "most"$/],
    [(_d, ctx) => ctx.publish('t', 1), /^entity error: a crdt entity cannot ask for effects or forward a command/],
    [(_d, ctx) => ctx.forward('t', 'k', 'c', 1), /a crdt entity cannot ask for effects or forward/],
  ];
  for (const [body, message] of cases) {
    const result = run('or-map', '{}', body);
    assert.equal(result.tag, 'err');
    assert.equal(result.val.tag, 'rejected');
    assert.match(result.val.val, message);
  }
  // A key that is not a string, or an unknown type, is a bug in the entity's code.
  const buggy = new TestKit(
    crdtEntity({ type: 'or-map', commands: { key: (d) => d.flag(3), type: (d) => d.get('k', 'counter') } }),
  );
  assert.throws(() => buggy.handle('key'), (e) => e instanceof TypeError && /a key must be a string/.test(e.message));
  assert.throws(() => buggy.handle('type'), (e) => e instanceof TypeError && /unknown crdt type `counter`/.test(e.message));
  const undecodable = crdtEntity({ type: 'flag', commands: { go: () => 1 } }).handle(witContext('go'), enc('{'), 'null');
  assert.match(undecodable.val.val, /^entity error: cannot decode the crdt value: /);
});

test('the crdt context: data, consistency and the journaled facts', () => {
  const entity = crdtEntity({
    type: 'g-counter',
    commands: {
      go: {
        payload: s.null,
        handle(data, _payload, ctx) {
          assert.ok(ctx instanceof CrdtContext);
          assert.equal(ctx.data, data);
          assert.equal(ctx.consistency, 'local');
          ctx.consistency = 'majority';
          return { key: ctx.key, consistency: ctx.consistency, r: ctx.random() < 1 };
        },
      },
    },
  });
  const kit = new TestKit(entity, { key: 'k9' });
  assert.deepEqual(kit.handle('go'), { key: 'k9', consistency: 'majority', r: true });
  assert.equal(kit.last.consistency, 'majority');
  assert.throws(() => kit.handle('go', 1), (e) => e instanceof CommandFailure && e.kind === 'bad-request');
});

test('an ephemeral value entity: same handlers, no effects', () => {
  const definition = (durability) => ({
    initialState: { n: 0 },
    durability,
    commands: {
      add: (state) => ++state.n,
      tell: (_state, _payload, ctx) => ctx.call('other', 'k', 'get'),
    },
  });
  const ephemeral = valueEntity(definition('ephemeral'));
  assert.equal(ephemeral.describe().durability, 'ephemeral');
  assert.equal(ephemeral.describe().crdt, undefined);
  assert.equal(valueEntity(definition(undefined)).describe().durability, 'durable');
  assert.throws(() => valueEntity(definition('memory')), /`durability` must be 'durable' or 'ephemeral'/);
  const subscriber = { ...definition('ephemeral'), subscriptions: [{ topic: 't', command: 'add', key: { pointer: '/k' } }] };
  assert.throws(() => valueEntity(subscriber), /valueEntity: an ephemeral entity cannot subscribe to topics \(deliveries are journaled\)/);

  const kit = new TestKit(ephemeral);
  assert.equal(kit.durability, 'ephemeral');
  assert.equal(kit.handle('add'), 1);
  assert.equal(kit.handle('add'), 2);
  assert.throws(() => kit.handle('tell'), {
    kind: 'rejected',
    message:
      'entity error: an ephemeral entity cannot ask for effects or forward a command ' +
      '(they need the journal of a durable value or event-sourced entity)',
  });
  kit.restart();
  assert.equal(kit.handle('add'), 1, 'an ephemeral state is gone after a restart');

  const durable = new TestKit(valueEntity(definition('durable')));
  durable.handle('add');
  durable.restart();
  assert.equal(durable.handle('add'), 2);
  assert.equal(durable.handle('tell'), null);
  assert.equal(durable.last.effects.length, 1);
});
