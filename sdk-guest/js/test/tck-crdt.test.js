/*
 * Unit tests of the TCK's crdt model (examples/tck-crdt) against tests/tck/SPEC.md "The crdt
 * model", run with the test kit's single-replica model: every type through its handle in maps
 * nested two deep, clear and delete, consistency, a handle of the wrong type, bad payloads.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { TestKit } from 'cella-sdk/testing';

import { entity } from '../examples/tck-crdt/index.js';

/** Runs `update` with `ops` (and `consistency`), checks its reply. */
function update(kit, ops, consistency) {
  const payload = consistency === undefined ? { ops } : { ops, consistency };
  assert.deepEqual(kit.handle('update', payload), { applied: ops.length });
}

/** The value read through the handle of `type` at `path`. */
const get = (kit, path, type) => kit.handle('get', { path, type }).value;

const P = ['outer', 'inner'];

describe('tck-crdt', () => {
  test('declares a durable or-map with update and get', () => {
    const kit = new TestKit(entity);
    assert.deepEqual(kit.commands, ['update', 'get']);
    assert.deepEqual([kit.kind, kit.crdtType, kit.durability], ['crdt', 'or-map', 'durable']);
    assert.deepEqual(kit.handle('get'), { value: {} });
    assert.deepEqual(kit.handle('update', { ops: [] }), { applied: 0 });
  });

  test('every type through its handle, two maps deep', () => {
    const kit = new TestKit(entity);
    const at = (key) => [...P, key];
    const steps = [
      ['g-counter', { increment: 3 }, 3],
      ['g-counter', { increment: 4 }, 7],
      ['pn-counter', { increment: 2 }, 2],
      ['pn-counter', { decrement: 5 }, -3],
      ['g-set', { add: 'b' }, ['b']],
      ['g-set', { add: { y: 1, x: [2] } }, ['b', { x: [2], y: 1 }]],
      ['g-set', { add: 'a' }, ['a', 'b', { x: [2], y: 1 }]],
      ['or-set', { add: 2 }, [2]],
      ['or-set', { add: 'z' }, ['z', 2]],
      ['or-set', { remove: 2 }, ['z']],
      ['lww-register', { set: { v: [1, null] } }, { v: [1, null] }],
      ['lww-register', { set: 'last' }, 'last'],
      ['flag', 'enable', true],
      ['flag', 'disable', false],
      ['vote', { vote: true }, { votes_for: 1, voters: 1, majority: true }],
      ['vote', { vote: false }, { votes_for: 0, voters: 1, majority: false }],
    ];
    for (const [type, action, expected] of steps) {
      update(kit, [{ path: at(type), type, action }]);
      assert.deepEqual(get(kit, at(type), type), expected, `${type} after ${JSON.stringify(action)}`);
    }
    assert.deepEqual(get(kit, ['outer'], 'or-map'), {
      inner: {
        'g-counter': 7,
        'pn-counter': -3,
        'g-set': ['a', 'b', { x: [2], y: 1 }],
        'or-set': ['z'],
        'lww-register': 'last',
        flag: false,
        vote: { votes_for: 0, voters: 1, majority: false },
      },
    });
    assert.deepEqual(kit.handle('get').value, { outer: get(kit, ['outer'], 'or-map') });
    assert.deepEqual(get(kit, [], 'or-map'), kit.handle('get').value);
  });

  test('a register reads null before its first set, a missing path null', () => {
    const kit = new TestKit(entity);
    assert.equal(get(kit, ['r'], 'lww-register'), null);
    update(kit, [{ path: ['r'], type: 'lww-register', action: { set: null } }]);
    assert.equal(get(kit, ['r'], 'lww-register'), null);
    assert.deepEqual(kit.value, { r: null });
    assert.equal(get(kit, ['nothing', 'here'], 'g-counter'), null);
    assert.equal(get(kit, ['r', 'below'], 'flag'), null);
    assert.equal(kit.last.persisted, false, 'get never changes anything');
  });

  test('clear and delete', () => {
    const kit = new TestKit(entity);
    update(kit, [
      { path: [...P, 's'], type: 'or-set', action: { add: 1 } },
      { path: [...P, 'f'], type: 'flag', action: 'enable' },
      { path: [...P, 'c'], type: 'g-counter', action: { increment: 1 } },
      { path: ['top'], type: 'pn-counter', action: { increment: 1 } },
    ]);
    update(kit, [
      { path: [...P, 's'], type: 'or-set', action: 'clear' },
      { path: [...P, 'f'], type: 'flag', action: 'clear' },
    ]);
    assert.deepEqual(kit.value, { outer: { inner: { s: [], f: false, c: 1 } }, top: 1 });
    update(kit, [{ path: P, type: 'or-map', action: { delete: 'c' } }]);
    assert.deepEqual(kit.value, { outer: { inner: { s: [], f: false } }, top: 1 });
    update(kit, [{ path: ['outer'], type: 'or-map', action: 'clear' }]);
    assert.deepEqual(kit.value, { outer: {}, top: 1 });
    update(kit, [{ path: [], type: 'or-map', action: { delete: 'top' } }]);
    assert.deepEqual(kit.value, { outer: {} });
    update(kit, [{ path: [], type: 'or-map', action: 'clear' }]);
    assert.deepEqual(kit.handle('get'), { value: {} });
  });

  test('each consistency is set on the outcome', () => {
    const kit = new TestKit(entity);
    const one = [{ path: ['n'], type: 'g-counter', action: { increment: 1 } }];
    update(kit, one);
    assert.equal(kit.last.consistency, 'local');
    for (const consistency of ['local', 'majority', 'all']) {
      update(kit, one, consistency);
      assert.equal(kit.last.consistency, consistency);
    }
    assert.equal(get(kit, ['n'], 'g-counter'), 4);
    assert.deepEqual(kit.last.ops, []);
  });

  test('the operations are the typed handles\' ones, each creating its own type', () => {
    const kit = new TestKit(entity);
    update(kit, [
      { path: [...P, 'g'], type: 'g-set', action: { add: 1 } },
      { path: [], type: 'or-map', action: { delete: 'x' } },
    ]);
    assert.deepEqual(kit.last.ops, [
      { path: [...P, 'g'], action: { add: 1 }, creates: 'g-set' },
      { path: [], action: { delete: 'x' }, creates: null },
    ]);
  });

  test('a handle of the wrong type fails the command in the host and changes nothing', () => {
    const kit = new TestKit(entity);
    update(kit, [{ path: [...P, 'n'], type: 'g-counter', action: { increment: 2 } }]);
    const before = kit.value;
    for (const [type, action] of [
      ['flag', 'enable'],
      ['or-set', { add: 1 }],
      ['pn-counter', { decrement: 1 }],
      ['lww-register', { set: 1 }],
      ['or-map', { delete: 'k' }],
    ]) {
      const ops = [
        { path: ['fine'], type: 'g-counter', action: { increment: 1 } },
        { path: [...P, 'n'], type, action },
      ];
      assert.throws(() => kit.handle('update', { ops }), { kind: 'failed' }, type);
      assert.deepEqual(kit.value, before);
    }
  });

  test('bad payloads are bad requests', () => {
    const kit = new TestKit(entity);
    const op = (fields) => ({ ops: [{ path: ['k'], type: 'g-counter', action: { increment: 1 }, ...fields }] });
    const bad = [
      null,
      {},
      { ops: {} },
      op({ path: 'k' }),
      op({ path: [1] }),
      op({ type: 'counter' }),
      op({ type: undefined }),
      op({ action: undefined }),
      op({ action: 'explode' }),
      op({ action: { increment: -1 } }),
      op({ action: { increment: 1.5 } }),
      op({ action: { increment: 1, decrement: 1 } }),
      op({ action: { decrement: 1 } }),
      op({ action: 'enable' }),
      op({ type: 'g-set', action: { remove: 1 } }),
      op({ type: 'g-set', action: 'clear' }),
      op({ type: 'vote', action: { vote: 'yes' } }),
      op({ type: 'or-map', action: { delete: 1 } }),
      op({ type: 'lww-register', action: { add: 1 } }),
      op({ path: [], type: 'g-counter' }),
      { ops: [], consistency: 'most' },
      { ops: [], consistency: 1 },
    ];
    for (const payload of bad) {
      assert.throws(() => kit.handle('update', payload), { kind: 'bad-request' }, JSON.stringify(payload));
    }
    for (const payload of [1, {}, { path: ['k'] }, { path: [], type: 'flag' }, { path: ['k'], type: 'set' }]) {
      assert.throws(() => kit.handle('get', payload), { kind: 'bad-request' }, JSON.stringify(payload));
    }
    assert.throws(() => kit.handle('put'), { kind: 'unknown-command', message: 'put' });
    assert.deepEqual(kit.value, {});
  });
});
