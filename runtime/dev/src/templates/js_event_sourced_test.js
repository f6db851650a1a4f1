/*
 * Unit tests of `{{name}}`: `npm test` runs them in Node through the test kit, without building
 * a component.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TestKit } from 'cella-sdk/testing';

import { entity } from '../src/index.js';

test('deposits and withdrawals are events', () => {
  const kit = new TestKit(entity);
  assert.deepEqual(kit.commands, ['deposit', 'withdraw', 'balance']);
  assert.deepEqual(kit.handle('deposit', 10), { balance: 10 });
  assert.deepEqual(kit.handle('withdraw', 4), { balance: 6 });
  assert.deepEqual(kit.handle('balance'), { balance: 6 });
  assert.deepEqual(kit.events, [{ deposited: { amount: 10 } }, { withdrawn: { amount: 4 } }]);
});

test('overdrafts are rejected and record nothing', () => {
  const kit = new TestKit(entity);
  kit.handle('deposit', 3);
  assert.throws(() => kit.handle('withdraw', 5), {
    kind: 'rejected',
    message: 'cannot withdraw 5: the balance is 3',
  });
  assert.throws(() => kit.handle('deposit', 0), { kind: 'rejected' });
  assert.deepEqual(kit.state, { balance: 3n });
  assert.equal(kit.events.length, 1);
});
