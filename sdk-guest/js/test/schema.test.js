/*
 * Unit tests of the schemas (src/schema.js): what each accepts, what it decodes to, and the
 * messages of what it refuses.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { INT64_MAX, INT64_MIN, SchemaError, isInt64, schema as s } from 'cella-sdk';

const refuses = (decode, value, message) =>
  assert.throws(() => decode(value, ''), (e) => e instanceof SchemaError && (message === undefined || e.message === message));

test('scalars', () => {
  assert.equal(s.null(null), null);
  refuses(s.null, 0, 'expected `null`, found the number 0');
  assert.equal(s.boolean(false), false);
  refuses(s.boolean, 'true', 'expected a boolean, found the string "true"');
  assert.equal(s.string(''), '');
  refuses(s.string, null, 'expected a string, found `null`');
  assert.equal(s.number(1.5), 1.5);
  assert.equal(s.number(12345678901234567890n), 12345678901234567890);
  refuses(s.number, '1');
  assert.equal(s.integer(-3), -3);
  refuses(s.integer, 1.5);
  refuses(s.integer, 2n ** 60n);
  assert.equal(s.any(undefined), undefined);
  assert.deepEqual(s.any({ a: 1 }), { a: 1 });
});

test('64-bit integers decode to BigInts within range', () => {
  assert.equal(s.int64(5), 5n);
  assert.equal(s.int64(-0), 0n);
  assert.equal(s.int64(INT64_MAX), INT64_MAX);
  assert.equal(s.int64(INT64_MIN), INT64_MIN);
  refuses(s.int64, INT64_MAX + 1n);
  refuses(s.int64, INT64_MIN - 1n);
  refuses(s.int64, 1.5, 'expected a 64-bit signed integer, found the number 1.5');
  refuses(s.int64, 'five', 'expected a 64-bit signed integer, found the string "five"');
  refuses(s.int64, null);
  refuses(s.int64, 1e19);
  assert.equal(s.uint64(2n ** 64n - 1n), 2n ** 64n - 1n);
  refuses(s.uint64, -1);
  assert.ok(isInt64(INT64_MAX) && isInt64(-5) && !isInt64(INT64_MAX + 1n) && !isInt64(1.5) && !isInt64('1'));
});

test('objects keep declared fields in order and ignore the rest', () => {
  const line = s.object({ productId: s.string, name: s.string, quantity: s.int64, note: s.optional(s.string) });
  const decoded = line({ quantity: 2, extra: true, name: 'Socks', productId: 'socks' }, '');
  assert.deepEqual(decoded, { productId: 'socks', name: 'Socks', quantity: 2n });
  assert.deepEqual(Object.keys(decoded), ['productId', 'name', 'quantity']);
  assert.equal(line({ productId: 'p', name: 'n', quantity: 1, note: 'x' }, '').note, 'x');
  assert.equal('note' in line({ productId: 'p', name: 'n', quantity: 1, note: null }, ''), false);
  refuses(line, { productId: 'socks', quantity: 1 }, 'missing field `name`');
  refuses(line, { productId: 'socks', name: 'Socks', quantity: '1' }, 'at `quantity`: expected a 64-bit signed integer, found the string "1"');
  refuses(line, [], 'expected an object, found an array');
});

test('arrays, records and nested paths', () => {
  const cart = s.object({ items: s.array(s.object({ quantity: s.int64 })) });
  assert.deepEqual(cart({ items: [{ quantity: 1 }] }, ''), { items: [{ quantity: 1n }] });
  refuses(cart, { items: [{ quantity: 1 }, { quantity: 'x' }] }, 'at `items[1].quantity`: expected a 64-bit signed integer, found the string "x"');
  refuses(cart, { items: {} }, 'at `items`: expected an array, found an object');
  const counts = s.record(s.int64);
  assert.deepEqual(counts({ a: 1, b: 2 }, ''), { a: 1n, b: 2n });
  refuses(counts, { a: 'x' }, 'at `a`: expected a 64-bit signed integer, found the string "x"');
});

test('variants are objects with exactly one known key', () => {
  const action = s.variant({ update: s.string, fail: s.string, nothing: s.null });
  assert.deepEqual(action({ update: 'x' }, ''), { update: 'x' });
  assert.deepEqual(action({ nothing: null }, ''), { nothing: null });
  refuses(action, { emit: 'x' }, 'unknown variant `emit`, expected one of `update`, `fail`, `nothing`');
  refuses(action, { update: 'x', fail: 'y' }, 'expected an object with exactly one key of `update`, `fail`, `nothing`, found 2 keys');
  refuses(action, 'update');
  refuses(action, { update: 1 }, 'at `update`: expected a string, found the number 1');
});

test('oneOf compares constants', () => {
  const color = s.oneOf('red', 'green');
  assert.equal(color('red'), 'red');
  refuses(color, 'blue', 'expected one of "red", "green", found the string "blue"');
});

test('callReply decodes the outcome of a call', () => {
  const any = s.callReply();
  assert.deepEqual(any({ ok: { value: 'x' } }, ''), { ok: { value: 'x' } });
  assert.deepEqual(any({ ok: null }, ''), { ok: null });
  assert.deepEqual(any({ error: { code: 'rejected', message: 'no', extra: 1 } }, ''), {
    error: { code: 'rejected', message: 'no' },
  });
  const typed = s.callReply(s.int64);
  assert.deepEqual(typed({ ok: 5 }, ''), { ok: 5n });
  refuses(typed, { ok: '5' }, 'at `ok`: expected a 64-bit signed integer, found the string "5"');
  for (const value of [null, 5, {}, { ok: 1, error: { code: 'c', message: 'm' } }, { value: 1 }, { error: 'no' }, { error: { code: 'c' } }]) {
    refuses(any, value);
  }
});
