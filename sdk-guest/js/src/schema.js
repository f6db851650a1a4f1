/*
 * Schemas: small decoders that check a JSON value and turn it into what the entity code
 * works with. They play the part serde types play in the Rust SDK: a command's payload that
 * does not fit its schema is a `bad-request`; state and events that do not fit theirs are an
 * entity error.
 *
 * A schema is just a function `(value, path) => decoded` that throws a `SchemaError` when the
 * value does not fit; `path` names the place in the document (`""` for the root,
 * `items[0].quantity` below it). The built-in ones live in the `schema` object; any function
 * of that shape can be used where a schema is expected.
 */

/** A JSON value that does not fit a schema. */
export class SchemaError extends Error {
  /**
   * @param {string} path where in the document (`""` for the whole value)
   * @param {string} message what is wrong
   */
  constructor(path, message) {
    super(path === '' ? message : `at \`${path}\`: ${message}`);
    this.name = 'SchemaError';
    this.path = path;
  }
}

/** The smallest signed 64-bit integer, -2^63. */
export const INT64_MIN = -(2n ** 63n);
/** The largest signed 64-bit integer, 2^63 - 1. */
export const INT64_MAX = 2n ** 63n - 1n;
/** The largest unsigned 64-bit integer, 2^64 - 1. */
export const UINT64_MAX = 2n ** 64n - 1n;

/**
 * Whether `value` is an integer (`number` or `BigInt`) that fits a signed 64-bit integer.
 * @param {unknown} value
 * @returns {boolean}
 */
export function isInt64(value) {
  const n = toBigInt(value);
  return n !== undefined && n >= INT64_MIN && n <= INT64_MAX;
}

/** `value` as a BigInt if it is an integer (`number` or `BigInt`), else `undefined`. */
function toBigInt(value) {
  if (typeof value === 'bigint') {
    return value;
  }
  if (typeof value === 'number' && Number.isInteger(value)) {
    return BigInt(value);
  }
  return undefined;
}

/** A short description of a JSON value for error messages. */
export function describe(value) {
  switch (typeof value) {
    case 'undefined':
      return 'nothing';
    case 'string':
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
    case 'number':
      return `the number ${value}`;
    case 'bigint':
      return `the number ${value}`;
    case 'boolean':
      return `\`${value}\``;
    default:
      if (value === null) {
        return '`null`';
      }
      return Array.isArray(value) ? 'an array' : 'an object';
  }
}

function expected(path, what, value) {
  return new SchemaError(path, `expected ${what}, found ${describe(value)}`);
}

function isPlainObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function child(path, name) {
  return path === '' ? name : `${path}.${name}`;
}

function quoteAll(names) {
  return names.map((n) => `\`${n}\``).join(', ');
}

/**
 * Marks a schema as accepting a missing field (see `schema.optional`).
 * @template T
 * @param {T} decode
 * @returns {T}
 */
function markOptional(decode) {
  Object.defineProperty(decode, 'optional', { value: true });
  return decode;
}

/**
 * The built-in schemas.
 *
 * ```js
 * const lineItem = schema.object({
 *   productId: schema.string,
 *   name: schema.string,
 *   quantity: schema.int64,
 * });
 * ```
 */
export const schema = Object.freeze({
  /** Any JSON value, unchanged. */
  any: (value) => value,

  /** `null` (which is also what an empty request body is). */
  null(value, path = '') {
    if (value !== null) {
      throw expected(path, '`null`', value);
    }
    return null;
  },

  /** `true` or `false`. */
  boolean(value, path = '') {
    if (typeof value !== 'boolean') {
      throw expected(path, 'a boolean', value);
    }
    return value;
  },

  /** A string. */
  string(value, path = '') {
    if (typeof value !== 'string') {
      throw expected(path, 'a string', value);
    }
    return value;
  },

  /** Any JSON number, as a `number` (a double: very large integers lose digits). */
  number(value, path = '') {
    if (typeof value === 'bigint') {
      return Number(value);
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw expected(path, 'a number', value);
    }
    return value;
  },

  /** An integer that a `number` holds exactly (|n| ≤ 2^53 - 1), as a `number`. */
  integer(value, path = '') {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      throw expected(path, 'an integer between -(2^53 - 1) and 2^53 - 1', value);
    }
    return value;
  },

  /** A signed 64-bit integer, as a `BigInt` (so arithmetic on it is exact). */
  int64(value, path = '') {
    const n = toBigInt(value);
    if (n === undefined || n < INT64_MIN || n > INT64_MAX) {
      throw expected(path, 'a 64-bit signed integer', value);
    }
    return n;
  },

  /** An unsigned 64-bit integer, as a `BigInt`. */
  uint64(value, path = '') {
    const n = toBigInt(value);
    if (n === undefined || n < 0n || n > UINT64_MAX) {
      throw expected(path, 'a 64-bit unsigned integer', value);
    }
    return n;
  },

  /**
   * `inner`, or nothing: a missing field or `null` decodes to `undefined` (and the field is
   * left out of the decoded object).
   */
  optional(inner) {
    return markOptional((value, path = '') =>
      value === undefined || value === null ? undefined : inner(value, path),
    );
  },

  /** An array whose every element fits `inner`. */
  array(inner) {
    return (value, path = '') => {
      if (!Array.isArray(value)) {
        throw expected(path, 'an array', value);
      }
      return value.map((element, i) => inner(element, `${path}[${i}]`));
    };
  },

  /**
   * An object with the given fields, each required unless its schema is `optional`. The
   * decoded object has exactly these fields, in this order; other fields are ignored.
   * @param {Record<string, Function>} fields
   */
  object(fields) {
    const entries = Object.entries(fields);
    return (value, path = '') => {
      if (!isPlainObject(value)) {
        throw expected(path, 'an object', value);
      }
      const out = {};
      for (const [name, decode] of entries) {
        const field = Object.hasOwn(value, name) ? value[name] : undefined;
        if (field === undefined && !decode.optional) {
          throw new SchemaError(path, `missing field \`${name}\``);
        }
        const decoded = decode(field, child(path, name));
        if (decoded !== undefined) {
          out[name] = decoded;
        }
      }
      return out;
    };
  },

  /** An object used as a map: any keys, every value fits `inner`. */
  record(inner) {
    return (value, path = '') => {
      if (!isPlainObject(value)) {
        throw expected(path, 'an object', value);
      }
      const out = {};
      for (const [name, element] of Object.entries(value)) {
        const decoded = inner(element, child(path, name));
        Object.defineProperty(out, name, {
          value: decoded,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return out;
    };
  },

  /**
   * One of several shapes, tagged by a single key: `{"<case>": <content>}` with `<content>`
   * fitting `cases[<case>]` (the JSON form of a Rust enum, e.g. `{"itemAdded": {...}}`).
   * Decodes to an object with that one key.
   * @param {Record<string, Function>} cases
   */
  variant(cases) {
    const names = Object.keys(cases);
    return (value, path = '') => {
      if (!isPlainObject(value)) {
        throw expected(path, `an object with one key of ${quoteAll(names)}`, value);
      }
      const keys = Object.keys(value);
      if (keys.length !== 1) {
        throw new SchemaError(
          path,
          `expected an object with exactly one key of ${quoteAll(names)}, found ${keys.length} keys`,
        );
      }
      const [name] = keys;
      if (!Object.hasOwn(cases, name)) {
        throw new SchemaError(path, `unknown variant \`${name}\`, expected one of ${quoteAll(names)}`);
      }
      return { [name]: cases[name](value[name], child(path, name)) };
    };
  },

  /**
   * The outcome of a call, as the command named as its reply route receives it (see
   * `ctx.call`): `{"ok": <reply>}`, with the reply fitting `ok` (default: any JSON), or
   * `{"error": {"code": C, "message": M}}`. Decodes to `{ ok: reply }` or
   * `{ error: { code, message } }`, so `'ok' in outcome` tells them apart.
   *
   * ```js
   * credited: {
   *   payload: schema.callReply(schema.int64),
   *   handle(state, outcome, ctx) {
   *     if ('error' in outcome) state.failed.push(`${ctx.correlation}: ${outcome.error.message}`);
   *     else state.balance = outcome.ok;
   *   },
   * }
   * ```
   * @param {Function} [ok] the schema of the target's reply
   */
  callReply(ok = schema.any) {
    return schema.variant({
      ok,
      error: schema.object({ code: schema.string, message: schema.string }),
    });
  },

  /** One of the given constants (strings, numbers, booleans or `null`), compared with `===`. */
  oneOf(...constants) {
    return (value, path = '') => {
      if (!constants.includes(value)) {
        throw expected(path, `one of ${constants.map((c) => JSON.stringify(c)).join(', ')}`, value);
      }
      return value;
    };
  },
});
