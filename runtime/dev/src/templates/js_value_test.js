/*
 * Unit tests of `{{name}}`: `npm test` runs them in Node through the test kit, without building
 * a component.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TestKit } from 'cella-sdk/testing';

import { entity } from '../src/index.js';

test('add replies the new total', () => {
  const kit = new TestKit(entity);
  assert.deepEqual(kit.commands, ['add', 'get']);
  assert.equal(kit.handle('add', 5), 5);
  assert.equal(kit.handle('add', -2), 3);
  assert.equal(kit.handle('get'), 3);
  assert.deepEqual(kit.state, { total: 3n });
  // `get` changed nothing, so only the two `add`s were persisted.
  assert.equal(kit.sequence, 2);
});

test('overflow is rejected and changes nothing', () => {
  const kit = new TestKit(entity);
  const max = 2n ** 63n - 1n;
  assert.equal(kit.handle('add', max), max);
  assert.throws(() => kit.handle('add', 1), {
    kind: 'rejected',
    message: 'adding 1 would overflow the total',
  });
  assert.equal(kit.state.total, max);
  assert.throws(() => kit.handle('add', 'five'), { kind: 'bad-request' });
});
