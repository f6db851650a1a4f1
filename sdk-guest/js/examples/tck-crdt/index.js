/*
 * The TCK's crdt model (`tck-crdt`, tests/tck/SPEC.md "The crdt model"): a durable or-map
 * entity that reaches every crdt type as the data under a path of map keys, through the SDK's
 * typed handles. `update` runs a list of operations `{path, type, action}` and sets the
 * command's consistency; `get` replies the whole value, or the value read through the typed
 * handle at a path.
 */

import { CONSISTENCIES, CRDT_ACTIONS as TAKES, CRDT_TYPES, SchemaError, badRequest, crdtEntity, schema } from 'cella-sdk';

/** The argument of each action written `{"<action>": <argument>}`. */
const ARGUMENT = {
  increment: schema.uint64,
  decrement: schema.uint64,
  add: schema.any,
  remove: schema.any,
  set: schema.any,
  vote: schema.boolean,
  delete: schema.string,
};

/** `type` with its article: `a g-counter`, `an or-set`. */
const named = (type) => `${type.startsWith('or-') ? 'an' : 'a'} ${type}`;

/** The actions written as a bare string. */
const BARE = ['enable', 'disable', 'clear'];

/** `{path, type}`: where the data is and the handle to take it as. */
const location = {
  path: schema.array(schema.string),
  type: schema.oneOf(...CRDT_TYPES),
};

/** An action: `{name, argument}`. */
function action(value, path) {
  if (typeof value === 'string') {
    if (!BARE.includes(value)) {
      throw new SchemaError(path, `unknown action \`${value}\` (bare actions: ${BARE.join(', ')})`);
    }
    return { name: value, argument: undefined };
  }
  const decoded = schema.variant(ARGUMENT)(value, path);
  const [name] = Object.keys(decoded);
  return { name, argument: decoded[name] };
}

const op = schema.object({ ...location, action });

/** The handle of `type` on the data at `path` (nested or-maps down to its last key). */
function handleAt(data, { path, type }, where) {
  if (path.length === 0) {
    if (type !== 'or-map') {
      badRequest(`${where}: an empty path is the entity's own data, an or-map, not ${named(type)}`);
    }
    return data;
  }
  let map = data;
  for (const key of path.slice(0, -1)) {
    map = map.orMap(key);
  }
  return map.get(path[path.length - 1], type);
}

/** Does `name` with `argument` on `handle` (whose type takes it). */
function perform(handle, name, argument) {
  switch (name) {
    case 'increment':
      return handle.increment(argument);
    case 'decrement':
      return handle.decrement(argument);
    case 'add':
      return handle.add(argument);
    case 'remove':
      return handle.remove(argument);
    case 'set':
      return handle.set(argument);
    case 'enable':
      return handle.enable();
    case 'disable':
      return handle.disable();
    case 'vote':
      return handle.vote(argument);
    case 'delete':
      return handle.delete(argument);
    default:
      return handle.clear();
  }
}

export const entity = crdtEntity({
  type: 'or-map',
  commands: {
    update: {
      payload: schema.object({
        ops: schema.array(op),
        consistency: schema.optional(schema.oneOf(...CONSISTENCIES)),
      }),
      handle(data, { ops, consistency }, ctx) {
        // Every operation is checked before any is recorded.
        ops.forEach(({ path, type, action: { name } }, i) => {
          if (!TAKES[type].includes(name)) {
            badRequest(`ops[${i}]: ${named(type)} does not take \`${name}\` (it takes ${TAKES[type].join(', ')})`);
          }
          if (path.length === 0 && type !== 'or-map') {
            badRequest(`ops[${i}]: an empty path is the entity's own data, an or-map, not ${named(type)}`);
          }
        });
        for (const [i, { path, type, action: a }] of ops.entries()) {
          perform(handleAt(data, { path, type }, `ops[${i}]`), a.name, a.argument);
        }
        ctx.consistency = consistency ?? 'local';
        return { applied: ops.length };
      },
    },
    get: {
      payload: (value, path) => (value === null ? null : schema.object(location)(value, path)),
      handle(data, at) {
        if (at === null) {
          return { value: data.value };
        }
        const handle = handleAt(data, at, 'get');
        return { value: handle.exists ? handle.value : null };
      },
    },
  },
});
