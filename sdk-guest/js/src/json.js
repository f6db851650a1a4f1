/*
 * Exact JSON for entities: `parse` and `stringify` like the built-in `JSON` ones, except that
 * integers keep every digit.
 *
 * JavaScript numbers are doubles, so `JSON.parse("9223372036854775807")` silently becomes
 * 9223372036854775808. Entities deal in 64-bit integers (totals, quantities, seeds), so:
 *
 * - `parse` returns an integer literal as a `number` when it is a safe integer
 *   (|n| < 2^53) and as a `BigInt` otherwise; every other value is what `JSON.parse` returns;
 * - `stringify` writes a `BigInt` as a plain JSON number (its decimal digits) and everything
 *   else as `JSON.stringify` does (`toJSON`, `undefined` and functions skipped in objects and
 *   `null` in arrays, non-finite numbers as `null`), without whitespace.
 *
 * Both take the built-in fast path when they can: text without a run of 16 or more digits
 * cannot hold an unsafe integer, and a value without a `BigInt` stringifies natively.
 *
 * `canonical` writes the canonical text the host keeps crdt set elements and register values
 * in (object keys sorted by code point, no whitespace); `compareText` orders strings as the host
 * does (by code point, i.e. by UTF-8 bytes); `copyJson` deep-copies a parsed value.
 */

/** Text that may hold an integer literal beyond the safe range (16+ digits in a row). */
const LONG_DIGITS = /\d{16}/;

/**
 * Parses JSON text. Throws a `SyntaxError` (the built-in parser's) for text that is not JSON.
 * @param {string} text
 * @returns {unknown}
 */
export function parse(text) {
  // The built-in parser validates (and gives the familiar error messages) in both paths.
  const value = JSON.parse(text);
  if (!LONG_DIGITS.test(text)) {
    return value;
  }
  return new ExactParser(text).document();
}

/**
 * Serializes a value as compact JSON text, `BigInt`s as plain numbers. Returns `undefined`
 * for a value with no JSON form (`undefined`, a function, a symbol), as `JSON.stringify` does.
 * Throws a `TypeError` for cyclic structures.
 * @param {unknown} value
 * @returns {string | undefined}
 */
export function stringify(value) {
  // Checked first rather than caught: a throw (the built-in serializer's on a BigInt) costs an
  // interpreted guest more than the whole command (a stack captured, frames unwound).
  if (holdsBigInt(value, 0)) {
    return write(value, '', new Set());
  }
  try {
    return JSON.stringify(value);
  } catch (error) {
    // The built-in serializer refuses BigInts; anything else it refused (a cycle, a throwing
    // `toJSON`) the exact serializer refuses the same way.
    if (!(error instanceof TypeError)) {
      throw error;
    }
  }
  return write(value, '', new Set());
}

/** Past this depth `holdsBigInt` stops looking (and says yes: a cycle, or a very deep value). */
const SCAN_DEPTH = 64;

/**
 * Whether `value` holds a `BigInt` in its own enumerable properties, at most `SCAN_DEPTH` deep
 * (deeper, or cyclic: `true`, and the exact serializer decides). A `toJSON` that returns one
 * is not seen: the built-in serializer's `TypeError` still sends that value to `write`.
 */
function holdsBigInt(value, depth) {
  if (typeof value === 'bigint') {
    return true;
  }
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  if (depth >= SCAN_DEPTH) {
    return true;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (holdsBigInt(value[i], depth + 1)) {
        return true;
      }
    }
    return false;
  }
  for (const name in value) {
    if (Object.hasOwn(value, name) && holdsBigInt(value[name], depth + 1)) {
      return true;
    }
  }
  return false;
}

/** The exact serializer: `JSON.stringify`'s algorithm with BigInts as numbers. */
function write(value, key, stack) {
  if (value !== null && (typeof value === 'object' || typeof value === 'bigint')) {
    const toJSON = value.toJSON;
    if (typeof toJSON === 'function') {
      value = toJSON.call(value, key);
    }
  }
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (value === null) {
    return 'null';
  }
  // Boxed primitives serialize as their primitive value.
  if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    return write(value.valueOf(), key, stack);
  }
  if (stack.has(value)) {
    throw new TypeError('cyclic object value');
  }
  stack.add(value);
  let out;
  if (Array.isArray(value)) {
    const parts = [];
    for (let i = 0; i < value.length; i++) {
      const part = write(value[i], String(i), stack);
      parts.push(part === undefined ? 'null' : part);
    }
    out = `[${parts.join(',')}]`;
  } else {
    const parts = [];
    for (const name of Object.keys(value)) {
      const part = write(value[name], name, stack);
      if (part !== undefined) {
        parts.push(`${JSON.stringify(name)}:${part}`);
      }
    }
    out = `{${parts.join(',')}}`;
  }
  stack.delete(value);
  return out;
}

const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Compares strings by code point, which is how the host (UTF-8 bytes) orders them. */
export function compareText(a, b) {
  let i = 0;
  while (i < a.length && i < b.length) {
    const x = a.codePointAt(i);
    const y = b.codePointAt(i);
    if (x !== y) {
      return x - y;
    }
    i += x > 0xffff ? 2 : 1;
  }
  return a.length - b.length;
}

function writeCanonical(value) {
  if (Array.isArray(value)) {
    return `[${value.map(writeCanonical).join(',')}]`;
  }
  if (isObject(value)) {
    const keys = Object.keys(value).sort(compareText);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${writeCanonical(value[k])}`).join(',')}}`;
  }
  return stringify(value);
}

/**
 * The canonical JSON text of `value`, as the host keeps set elements and register values:
 * object keys sorted, no whitespace, integers exact. `undefined` for a value with no JSON form.
 * @param {unknown} value
 * @returns {string | undefined}
 */
export function canonical(value) {
  const text = stringify(value);
  return text === undefined ? undefined : writeCanonical(parse(text));
}

/** A deep copy of a JSON value (as the SDK's JSON reads it). */
export function copyJson(value) {
  if (Array.isArray(value)) {
    return value.map(copyJson);
  }
  if (isObject(value)) {
    const out = {};
    for (const key of Object.keys(value)) {
      setKey(out, key, copyJson(value[key]));
    }
    return out;
  }
  return value;
}

/** Sets an own property, `__proto__` included. */
export function setKey(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
}

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

/**
 * A recursive-descent parser for text the built-in parser already accepted (so it need not
 * report errors), keeping integer literals exact.
 */
class ExactParser {
  constructor(text) {
    this.text = text;
    this.at = 0;
  }

  document() {
    const value = this.value();
    this.space();
    return value;
  }

  space() {
    WHITESPACE.lastIndex = this.at;
    WHITESPACE.exec(this.text);
    this.at = WHITESPACE.lastIndex;
  }

  value() {
    this.space();
    const c = this.text[this.at];
    switch (c) {
      case '{':
        return this.object();
      case '[':
        return this.array();
      case '"':
        return this.string();
      case 't':
        this.at += 4;
        return true;
      case 'f':
        this.at += 5;
        return false;
      case 'n':
        this.at += 4;
        return null;
      default:
        return this.number();
    }
  }

  object() {
    const out = {};
    this.at++; // {
    this.space();
    if (this.text[this.at] === '}') {
      this.at++;
      return out;
    }
    for (;;) {
      this.space();
      const name = this.string();
      this.space();
      this.at++; // :
      const value = this.value();
      if (name === '__proto__') {
        // As `JSON.parse` does: an own property, not the prototype.
        Object.defineProperty(out, name, {
          value,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      } else {
        out[name] = value;
      }
      this.space();
      if (this.text[this.at++] === '}') {
        return out;
      }
    }
  }

  array() {
    const out = [];
    this.at++; // [
    this.space();
    if (this.text[this.at] === ']') {
      this.at++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.space();
      if (this.text[this.at++] === ']') {
        return out;
      }
    }
  }

  string() {
    const start = this.at;
    let i = start + 1;
    let escaped = false;
    for (;;) {
      const c = this.text.charCodeAt(i);
      if (c === 0x5c /* \ */) {
        escaped = true;
        i += 2;
      } else if (c === 0x22 /* " */) {
        break;
      } else {
        i++;
      }
    }
    this.at = i + 1;
    const raw = this.text.slice(start + 1, i);
    return escaped ? JSON.parse(this.text.slice(start, i + 1)) : raw;
  }

  number() {
    NUMBER.lastIndex = this.at;
    const match = NUMBER.exec(this.text);
    const literal = match[0];
    this.at = NUMBER.lastIndex;
    const value = Number(literal);
    if (match[1] === undefined && match[2] === undefined && !Number.isSafeInteger(value)) {
      return BigInt(literal);
    }
    return value;
  }
}
