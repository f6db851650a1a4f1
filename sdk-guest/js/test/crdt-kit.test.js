/*
 * Unit tests of the test kit's single-replica crdt model (src/crdt-replica.js) and of running
 * crdt entities in the kit: chained commands, fed values, operations the host would refuse,
 * the readable operations and restarts.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { crdtEntity, schema as s } from 'cella-sdk';
import { CommandFailure, CrdtReplica, ReplicaError, TestKit, readableOp } from 'cella-sdk/testing';

/** A WIT `crdt-op`. */
const op = (path, tag, val, creates) => ({ path, action: val === undefined ? { tag } : { tag, val }, creates });

describe('CrdtReplica', () => {
  test('counters, sets, register, flag and vote as one replica', () => {
    const counter = new CrdtReplica('pn-counter');
    counter.apply([op([], 'increment', 5n), op([], 'decrement', 7n)]);
    assert.equal(counter.value, -2);
    counter.apply([op([], 'increment', 1n << 60n)]);
    assert.equal(counter.value, (1n << 60n) - 2n);

    const set = new CrdtReplica('or-set', ['m']);
    set.apply([op([], 'add', '"z"'), op([], 'add', '{"b":1,"a":0}'), op([], 'add', '"a"'), op([], 'add', '"z"')]);
    assert.deepEqual(set.value, ['a', 'm', 'z', { a: 0, b: 1 }]);
    set.apply([op([], 'remove', '"m"')]);
    assert.deepEqual(set.value, ['a', 'z', { a: 0, b: 1 }]);
    set.apply([op([], 'clear')]);
    assert.deepEqual(set.value, []);
    assert.equal(set.text, '[]');

    const register = new CrdtReplica('lww-register');
    assert.equal(register.value, null);
    register.apply([op([], 'set', '[1]'), op([], 'set', '{"x":2}')]);
    assert.deepEqual(register.value, { x: 2 });

    const flag = new CrdtReplica('flag');
    flag.apply([op([], 'enable')]);
    assert.equal(flag.value, true);
    flag.apply([op([], 'clear')]);
    assert.equal(flag.value, false);

    const vote = new CrdtReplica('vote', { votes_for: 1, voters: 2, majority: false });
    vote.apply([op([], 'vote', true)]);
    assert.deepEqual(vote.value, { votes_for: 2, voters: 3, majority: true });
    vote.apply([op([], 'vote', false)]);
    assert.deepEqual(vote.value, { votes_for: 1, voters: 3, majority: false });
  });

  test('maps: keys typed by their first operation, nested, deleted keys kept unread', () => {
    const map = new CrdtReplica('or-map');
    map.apply([
      op(['a', 'b', 'n'], 'increment', 2n, 'g-counter'),
      op(['a', 's'], 'add', '1', 'g-set'),
      op(['c'], 'clear', undefined, 'flag'),
      op(['d'], 'clear'),
    ]);
    assert.deepEqual(map.value, { a: { b: { n: 2 }, s: [1] }, c: false });
    assert.throws(() => map.apply([op(['a', 's'], 'remove', '1', 'g-set')]), ReplicaError);
    map.apply([op([], 'delete', 'a')]);
    assert.deepEqual(map.value, { c: false });
    map.apply([op(['a', 'b', 'n'], 'increment', 1n, 'g-counter')]);
    assert.deepEqual(map.value, { a: { b: { n: 3 }, s: [1] }, c: false }, 'a deleted key goes on from its data');
    map.apply([op([], 'clear')]);
    assert.deepEqual(map.value, {});
    const deep = (n) => op(Array.from({ length: n }, (_, i) => `k${i}`), 'enable', undefined, 'flag');
    map.apply([deep(32)]);
    assert.throws(() => map.apply([deep(33)]), { name: 'ReplicaError', message: "an operation's path is 33 keys deep (at most 32)" });
  });

  test('an operation of the wrong type fails the whole command and changes nothing', () => {
    const map = new CrdtReplica('or-map');
    map.apply([op(['n'], 'increment', 1n, 'g-counter')]);
    const cases = [
      [op(['n'], 'enable', undefined, 'flag'), /^the data at \["n"\] is a g-counter, which does not take `enable` \(it takes increment\)$/],
      [op(['n'], 'decrement', 1n, 'pn-counter'), /is a g-counter, which does not take `decrement\(1\)`/],
      [op(['n', 'x'], 'enable', undefined, 'flag'), /\["n"\] is a g-counter, not an or-map/],
      [op([], 'enable'), /^the entity is an or-map, which does not take `enable`/],
    ];
    for (const [bad, message] of cases) {
      assert.throws(() => map.apply([op(['m'], 'increment', 1n, 'g-counter'), bad]), (e) => e instanceof ReplicaError && message.test(e.message));
      assert.deepEqual(map.value, { n: 1 });
    }
  });

  test('a fed value: map entries take the type of the first operation that reads them', () => {
    const map = new CrdtReplica('or-map', { n: 4, s: ['b'], f: true, r: 'x', v: { votes_for: 1, voters: 1, majority: true }, m: { k: 1 } });
    map.apply([
      op(['n'], 'decrement', 1n),
      op(['s'], 'remove', '"b"', 'or-set'),
      op(['f'], 'disable', undefined, 'flag'),
      op(['r'], 'set', '"y"', 'lww-register'),
      op(['v'], 'vote', false, 'vote'),
      op(['m', 'k'], 'increment', 1n, 'g-counter'),
    ]);
    assert.deepEqual(map.value, { n: 3, s: [], f: false, r: 'y', v: { votes_for: 1, voters: 2, majority: false }, m: { k: 2 } });
    // Typed now: the counter takes no flag operation.
    assert.throws(() => map.apply([op(['n'], 'enable', undefined, 'flag')]), /is a pn-counter/);
    assert.throws(() => new CrdtReplica('g-counter', 'x'), /the value is not the JSON view of a g-counter/);
    assert.throws(() => new CrdtReplica('or-map', { s: [1] }).apply([op(['s'], 'increment', 1n, 'g-counter')]), /is a g-set, which does not take `increment\(1\)`/);
  });

  test('readableOp: the TCK form of an operation', () => {
    assert.deepEqual(readableOp(op(['a'], 'increment', 3n, 'g-counter')), { path: ['a'], action: { increment: 3 }, creates: 'g-counter' });
    assert.deepEqual(readableOp(op([], 'add', '{"a":[1]}')), { path: [], action: { add: { a: [1] } }, creates: null });
    assert.deepEqual(readableOp(op([], 'enable')).action, 'enable');
    assert.deepEqual(readableOp(op([], 'delete', 'k')).action, { delete: 'k' });
    assert.deepEqual(readableOp(op([], 'vote', false)).action, { vote: false });
    assert.deepEqual(readableOp(op([], 'decrement', 1n << 60n)).action, { decrement: 1n << 60n });
  });
});

describe('TestKit with a crdt entity', () => {
  const visits = crdtEntity({
    type: 'or-map',
    durability: 'ephemeral',
    commands: {
      visit: {
        payload: s.string,
        handle(data, page, ctx) {
          data.gCounter(page).increment();
          data.orSet('pages').add(page);
          ctx.consistency = 'majority';
          return data.gCounter(page).value;
        },
      },
      stats: { payload: s.null, handle: (data) => ({ pages: data.orSet('pages').elements, size: data.size }) },
      wrong: (data) => data.flag('pages').enable(),
    },
  });

  test('commands chain through the replica', () => {
    const kit = new TestKit(visits);
    assert.deepEqual(kit.value, {});
    assert.equal(kit.handle('visit', 'home'), 1);
    assert.deepEqual(kit.last.ops, [
      { path: ['home'], action: { increment: 1 }, creates: 'g-counter' },
      { path: ['pages'], action: { add: 'home' }, creates: 'or-set' },
    ]);
    assert.equal(kit.last.consistency, 'majority');
    assert.equal(kit.last.persisted, true);
    assert.equal(kit.handle('visit', 'home'), 2);
    assert.equal(kit.handle('visit', 'about'), 1);
    assert.deepEqual(kit.handle('stats'), { pages: ['about', 'home'], size: 3 });
    assert.deepEqual(kit.last.ops, []);
    assert.equal(kit.last.persisted, false);
    assert.equal(kit.last.consistency, 'local');
    assert.deepEqual(kit.value, { about: 1, home: 2, pages: ['about', 'home'] });
    assert.deepEqual(kit.state, kit.value);
  });

  test('a fed value, and operations the host would refuse', () => {
    const kit = new TestKit(visits);
    kit.setValue({ home: 41, pages: ['home'] });
    assert.equal(kit.handle('visit', 'home'), 42);
    assert.throws(
      () => kit.handle('wrong'),
      (e) => e instanceof CommandFailure && e.kind === 'failed' && /the data at \["pages"\] is an or-set, which does not take `enable`/.test(e.message),
    );
    assert.equal(kit.last, undefined);
    assert.deepEqual(kit.value, { home: 42, pages: ['home'] });
    assert.throws(() => kit.handle('stats', 1), { kind: 'bad-request' });
  });

  test('an ephemeral crdt entity is empty after a restart', () => {
    const kit = new TestKit(visits);
    kit.handle('visit', 'home');
    kit.restart();
    assert.deepEqual(kit.value, {});
    const durable = new TestKit(crdtEntity({ type: 'flag', commands: { on: (f) => f.enable() } }));
    durable.handle('on');
    durable.restart();
    assert.equal(durable.value, true);
  });

  test('value and setValue are for crdt entities only', () => {
    const kit = new TestKit(crdtEntity({ type: 'g-counter', commands: {} }));
    assert.equal(kit.value, 0);
    assert.throws(() => kit.setValue('x'), /not the JSON view of a g-counter/);
    assert.throws(() => kit.handle('go'), { kind: 'unknown-command', message: 'go' });
  });
});
