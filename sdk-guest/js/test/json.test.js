/*
 * Unit tests of the SDK's exact JSON (src/json.js): integers beyond 2^53 survive a round trip,
 * everything else behaves like the built-in JSON.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseJson as parse, stringifyJson as stringify } from 'cella-sdk';

test('safe integers and other values parse as the built-in parser does', () => {
  for (const text of ['0', '-0', '1.5', '1e3', '"x"', 'true', 'null', '[1,{"a":[2]}]', ' {"a" : 1} ']) {
    assert.deepEqual(parse(text), JSON.parse(text));
  }
});

test('integers beyond the safe range parse as BigInts', () => {
  assert.equal(parse('9223372036854775807'), 9223372036854775807n);
  assert.equal(parse('-9223372036854775808'), -9223372036854775808n);
  assert.equal(parse('9007199254740991'), 9007199254740991);
  assert.equal(parse('9007199254740992'), 9007199254740992n);
  assert.deepEqual(parse('{"a":[1, 18446744073709551615, 2.5], "b": "12345678901234567890"}'), {
    a: [1, 18446744073709551615n, 2.5],
    b: '12345678901234567890',
  });
  // Not integer literals: doubles, as JSON.parse reads them.
  assert.equal(parse('12345678901234567890.5'), 12345678901234567890.5);
  assert.equal(parse('12345678901234567890e0'), 12345678901234567890);
});

test('the exact parser reads strings, escapes and nesting like the built-in one', () => {
  const text = '{"s":"a\\"b\\\\c\\u00e9\\n","e":"","n":[[],{}],"t":true,"f":false,"z":null,"big":12345678901234567890}';
  const parsed = parse(text);
  const { big, ...rest } = parsed;
  assert.equal(big, 12345678901234567890n);
  const { big: _, ...expected } = JSON.parse(text);
  assert.deepEqual(rest, expected);
});

test('__proto__ keys are own properties, not prototypes', () => {
  const parsed = parse('{"__proto__":{"polluted":1},"n":12345678901234567890}');
  assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
  assert.deepEqual(Object.keys(parsed), ['__proto__', 'n']);
  assert.equal({}.polluted, undefined);
});

test('invalid JSON throws the built-in SyntaxError', () => {
  for (const text of ['{', '', 'nul', '[1,]', '01', '12345678901234567890x']) {
    assert.throws(() => parse(text), SyntaxError);
  }
});

test('BigInts stringify as plain numbers', () => {
  assert.equal(stringify(9223372036854775807n), '9223372036854775807');
  assert.equal(stringify({ a: [1n, 2], b: 'x' }), '{"a":[1,2],"b":"x"}');
  assert.equal(stringify({ total: -9223372036854775808n }), '{"total":-9223372036854775808}');
});

test('everything else stringifies like JSON.stringify', () => {
  const date = new Date(0);
  const values = [
    null,
    1.5,
    'é"\n',
    [undefined, () => 1, NaN, Infinity],
    { a: undefined, b: () => 1, c: Symbol('s'), d: date, e: { toJSON: (k) => `key ${k}` } },
    new Number(3),
    new String('s'),
    new Boolean(false),
  ];
  for (const value of values) {
    assert.equal(stringify(value), JSON.stringify(value));
    // The same through the exact path (a BigInt forces it).
    assert.equal(stringify([value, 1n]), JSON.stringify([value, 1]));
  }
  assert.equal(stringify(undefined), undefined);
  assert.equal(stringify(() => 1), undefined);
});

test('cycles are a TypeError on both paths', () => {
  const a = { n: 1 };
  a.self = a;
  assert.throws(() => stringify(a), TypeError);
  a.big = 1n;
  assert.throws(() => stringify(a), TypeError);
});

test('round trips keep every digit', () => {
  const value = { total: 9223372036854775807n, items: [{ quantity: -9223372036854775808n }], f: 0.1 };
  assert.deepEqual(parse(stringify(value)), value);
});
