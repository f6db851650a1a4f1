/*
 * Unit tests of the export glue (src/glue.js) and the test kit (src/testing.js): the WIT
 * functions as a component exports them, failure mapping, persistence rules and definition
 * checks.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { badRequest, eventSourcedEntity, reject, schema as s, valueEntity } from 'cella-sdk';
import { CommandFailure, TestKit } from 'cella-sdk/testing';

const enc = (text) => new TextEncoder().encode(text);
const dec = (bytes) => new TextDecoder().decode(bytes);
const witContext = (command) => ({
  entityType: 't',
  key: 'k',
  commandId: 'c',
  command,
  timestampMs: 5n,
  randomSeed: 1n,
  sequence: 0n,
});

const notes = valueEntity({
  initialState: { notes: [] },
  commands: {
    add: { payload: s.string, handle: (state, note) => void state.notes.push(note) },
    count: (state) => state.notes.length,
    echo: (_state, payload) => payload,
    replace: (_state, payload, ctx) => {
      ctx.state = { notes: [payload] };
      return 'replaced';
    },
    refuse: () => reject('no notes today'),
    picky: (_state, payload) => (payload === 'ok' ? 'fine' : badRequest('say ok')),
    boom: () => {
      throw new RangeError('kaboom');
    },
    async: async () => 1,
    unjson: () => () => 1,
    forward: (_state, _payload, ctx) => ctx.forward('other', 'k', 'get', { n: 1n }),
  },
});

test('describe lists the commands in definition order', () => {
  assert.deepEqual(notes.describe(), {
    kind: 'value',
    commands: ['add', 'count', 'echo', 'replace', 'refuse', 'picky', 'boom', 'async', 'unjson', 'forward'],
    snapshotEvery: 0,
    subscriptions: [],
    eventsTopic: undefined,
    durability: 'durable',
    crdt: undefined,
  });
});

test('a value entity persists only when the state changes', () => {
  const kit = new TestKit(notes);
  assert.equal(kit.handle('count'), 0);
  assert.equal(kit.last.persisted, false);
  assert.equal(kit.handle('add', 'a'), null);
  assert.equal(kit.last.persisted, true);
  assert.equal(kit.handle('count'), 1);
  assert.deepEqual(kit.state, { notes: ['a'] });
  assert.deepEqual(kit.stateJson, { notes: ['a'] });
  assert.equal(kit.handle('replace', 'b'), 'replaced');
  assert.deepEqual(kit.state, { notes: ['b'] });
  assert.equal(kit.sequence, 2);
});

test('payloads: JSON text, empty bodies are null, schemas decode', () => {
  const kit = new TestKit(notes);
  assert.equal(kit.handleJson('echo', ''), null);
  assert.equal(kit.handleJson('echo', ' \n'), null);
  assert.deepEqual(kit.handleJson('echo', '{"a":12345678901234567890}'), { a: 12345678901234567890n });
  assert.throws(() => kit.handleJson('echo', '{'), (e) =>
    e instanceof CommandFailure && e.kind === 'bad-request' && e.message.startsWith('command `echo`: the payload is not valid JSON: '));
  assert.throws(() => kit.handle('add', 1), {
    kind: 'bad-request',
    message: 'command `add`: expected a string, found the number 1',
  });
  assert.throws(() => kit.handle('picky', 'no'), { kind: 'bad-request', message: 'command `picky`: say ok' });
  assert.equal(kit.handle('picky', 'ok'), 'fine');
});

test('failures: unknown commands, rejections, entity errors', () => {
  const kit = new TestKit(notes);
  assert.throws(() => kit.handle('nope'), { name: 'CommandFailure', kind: 'unknown-command', message: 'nope' });
  assert.throws(() => kit.handle('refuse'), { kind: 'rejected', message: 'no notes today' });
  assert.throws(() => kit.handle('async'), {
    kind: 'rejected',
    message: 'entity error: the handler of `async` returned a Promise: handlers must be synchronous',
  });
  assert.throws(() => kit.handle('unjson'), { kind: 'rejected', message: 'entity error: cannot encode the reply: it has no JSON form' });
  assert.equal(kit.last, undefined);
  assert.equal(kit.sequence, 0);
});

test('a stored state that does not decode is an entity error', () => {
  const result = notes.handle(witContext('count'), enc('{"notes":'), 'null');
  assert.equal(result.tag, 'err');
  assert.equal(result.val.tag, 'rejected');
  assert.match(result.val.val, /^entity error: cannot decode the state: /);
  const strict = valueEntity({ initialState: 0n, stateSchema: s.int64, commands: { get: (n) => n } });
  assert.deepEqual(strict.handle(witContext('get'), enc('"x"'), ''), {
    tag: 'err',
    val: { tag: 'rejected', val: 'entity error: cannot decode the state: expected a 64-bit signed integer, found the string "x"' },
  });
  assert.deepEqual(strict.handle(witContext('get'), enc('12345678901234567890'), ''), {
    tag: 'err',
    val: { tag: 'rejected', val: 'entity error: cannot decode the state: expected a 64-bit signed integer, found the number 12345678901234567890' },
  });
});

test('an exception escaping entity code propagates out of the test kit unchanged', () => {
  const kit = new TestKit(notes);
  assert.throws(() => kit.handle('boom'), { name: 'RangeError', message: 'kaboom' });
});

test('the component export logs an escaping exception and throws a trap value', (t) => {
  const logged = [];
  t.mock.method(console, 'error', (line) => logged.push(line));
  let thrown;
  try {
    notes.handle(witContext('boom'), undefined, 'null');
  } catch (e) {
    thrown = e;
  }
  assert.equal(logged.length, 1);
  assert.match(logged[0], /^entity error: uncaught exception in command `boom`: RangeError: kaboom\n/);
  // The bindings read `payload` to build an `err`: reading it throws, so the component traps.
  assert.throws(() => thrown.payload, /trapped/);
});

test('the WIT outcome of a value command', () => {
  const result = notes.handle(witContext('forward'), undefined, 'null');
  assert.deepEqual(result, {
    tag: 'ok',
    val: {
      events: [],
      state: undefined,
      reply: 'null',
      forward: { target: { entityType: 'other', key: 'k' }, command: 'get', payload: '{"n":1}' },
      effects: [],
      crdtOps: [],
      consistency: 'local',
    },
  });
  const added = notes.handle(witContext('add'), enc('{"notes":[]}'), '"x"');
  assert.equal(dec(added.val.state), '{"notes":["x"]}');
  assert.deepEqual(notes.apply(undefined, enc('{}')), { tag: 'err', val: 'a value entity has no events' });
  assert.deepEqual(notes.renderEvent(enc('{}')), { tag: 'err', val: 'a value entity has no events' });
  assert.deepEqual(notes.renderState(enc('{"notes":[1]}')), { tag: 'ok', val: '{"notes":[1]}' });
  assert.equal(notes.renderState(enc('[')).tag, 'err');
});

const ledger = eventSourcedEntity({
  initialState: { balance: 0n, entries: 0 },
  stateSchema: s.object({ balance: s.int64, entries: s.integer }),
  eventSchema: s.variant({ credited: s.int64, debited: s.int64 }),
  snapshotEvery: 50,
  commands: {
    credit: {
      payload: s.int64,
      handle(state, amount, ctx) {
        ctx.emit({ credited: amount });
        ctx.emit({ credited: amount });
        // `emit` applied both events already (this `apply` returns a new state).
        return { balance: ctx.state.balance, seen: ctx.emitted.length, before: state.balance };
      },
    },
    debit: {
      payload: s.int64,
      handle(state, amount, ctx) {
        if (amount > state.balance) reject('insufficient funds');
        ctx.emit({ debited: amount });
        return ctx.state.balance;
      },
    },
    wrong: (_state, _payload, ctx) => ctx.emit({ refunded: 1 }),
    cheat: (state, _payload, ctx) => {
      ctx.emit({ credited: 1 });
      ctx.state.balance += 100n;
    },
    balance: (state) => state.balance,
  },
  apply(state, event) {
    if ('credited' in event) return { balance: state.balance + event.credited, entries: state.entries + 1 };
    return { balance: state.balance - event.debited, entries: state.entries + 1 };
  },
});

test('event-sourced: emit applies at once; events and the folded state are persisted', () => {
  const kit = new TestKit(ledger);
  assert.equal(kit.kind, 'event-sourced');
  assert.equal(kit.snapshotEvery, 50);
  assert.deepEqual(kit.handle('credit', 5), { balance: 10, seen: 2, before: 0 });
  assert.deepEqual(kit.last.events, [{ credited: 5 }, { credited: 5 }]);
  assert.equal(kit.handle('debit', 3), 7);
  assert.throws(() => kit.handle('debit', 100), { kind: 'rejected', message: 'insufficient funds' });
  assert.equal(kit.handle('balance'), 7);
  assert.equal(kit.last.persisted, false);
  assert.deepEqual(kit.events, [{ credited: 5 }, { credited: 5 }, { debited: 3 }]);
  assert.deepEqual(kit.state, { balance: 7n, entries: 3 });
  assert.equal(kit.sequence, 2);
});

test('event-sourced: an event that does not fit the event schema is an entity error', () => {
  const kit = new TestKit(ledger);
  assert.throws(() => kit.handle('wrong'), {
    kind: 'rejected',
    message: 'entity error: the emitted event does not fit the event schema: cannot decode the event: unknown variant `refunded`, expected one of `credited`, `debited`',
  });
});

test('event-sourced: the kit catches a state that is not the fold of the events', () => {
  const kit = new TestKit(ledger);
  assert.throws(() => kit.handle('cheat'), /differs from the fold of its events/);
});

test('event-sourced: the apply and render exports', () => {
  const applied = ledger.apply(undefined, enc('{"credited":9223372036854775807}'));
  assert.deepEqual(applied.tag, 'ok');
  assert.equal(dec(applied.val), '{"balance":9223372036854775807,"entries":1}');
  assert.deepEqual(ledger.apply(undefined, enc('{"x":1}')), {
    tag: 'err',
    val: 'cannot decode the event: unknown variant `x`, expected one of `credited`, `debited`',
  });
  assert.deepEqual(ledger.renderEvent(enc('{"debited":2}')), { tag: 'ok', val: '{"debited":2}' });
  assert.deepEqual(ledger.describe().kind, 'event-sourced');
});

test('event-sourced: applyAll folds a batch like apply per event', () => {
  const events = [enc('{"credited":5}'), enc('{"debited":2}'), enc('{"credited":1}')];
  let folded;
  for (const event of events) {
    folded = ledger.apply(folded, event).val;
  }
  const batch = ledger.applyAll(undefined, events);
  assert.equal(batch.tag, 'ok');
  assert.equal(dec(batch.val), dec(folded));
  assert.equal(dec(batch.val), '{"balance":4,"entries":3}');
  const more = ledger.applyAll(batch.val, [enc('{"debited":4}')]);
  assert.equal(dec(more.val), '{"balance":0,"entries":4}');
  assert.deepEqual(ledger.applyAll(undefined, [events[0], enc('{"x":1}')]), {
    tag: 'err',
    val: 'cannot decode the event: unknown variant `x`, expected one of `credited`, `debited`',
  });
  assert.deepEqual(notes.applyAll(undefined, events), { tag: 'err', val: 'a value entity has no events' });
});

/** The `fold` export of the module `foldingEntry` writes, bound to `entity`. */
async function foldExport(entity) {
  const { foldingEntry } = await import('../tools/componentize.mjs');
  const source = foldingEntry('/x/entity.js');
  assert.match(source, /^import \{ entity \} from "\/x\/entity\.js";\nexport \{ entity \};\n/);
  const body = source.split('\n').slice(2).join('\n').replace('export const fold', 'const fold');
  return new Function('entity', `${body}\nreturn fold;`)(entity);
}

test('the component exports fold beside the entity, falling back to apply per event', async () => {
  const fromGlue = await foldExport(ledger);
  assert.equal(dec(fromGlue.applyAll(undefined, [enc('{"credited":2}')]).val), '{"balance":2,"entries":1}');
  const byHand = await foldExport({
    apply: (state, event) =>
      dec(event) === 'bad' ? { tag: 'err', val: 'bad event' } : { tag: 'ok', val: enc(`${state === undefined ? '' : dec(state)}${dec(event)}`) },
  });
  assert.equal(dec(byHand.applyAll(undefined, [enc('a'), enc('b')]).val), 'ab');
  assert.deepEqual(byHand.applyAll(undefined, [enc('a'), enc('bad')]), { tag: 'err', val: 'bad event' });
});

test('definitions are checked when they are made', () => {
  assert.throws(() => valueEntity({ commands: {} }), /`initialState` is missing/);
  assert.throws(() => valueEntity({ initialState: 1 }), /`commands` must be an object/);
  assert.throws(() => valueEntity({ initialState: 1, commands: { a: 1 } }), /command `a` must be a function/);
  assert.throws(() => valueEntity({ initialState: () => 1, commands: {} }), /no JSON form/);
  assert.throws(() => valueEntity({ initialState: 1, commands: {}, apply: () => {} }), /no events/);
  assert.throws(() => eventSourcedEntity({ initialState: 1, commands: {} }), /`apply\(state, event\)` is missing/);
  assert.throws(() => eventSourcedEntity({ initialState: 1, commands: {}, apply() {}, snapshotEvery: -1 }), /snapshotEvery/);
  assert.throws(() => new TestKit({}), /expected an entity/);
});

test('the context the kit passes is deterministic', () => {
  const probe = valueEntity({
    initialState: null,
    commands: { ctx: (_s, _p, ctx) => [ctx.entityType, ctx.key, ctx.commandId, ctx.timestampMs, ctx.sequence, ctx.randomSeed] },
  });
  const kit = new TestKit(probe, { entityType: 'probe', key: 'p1' });
  kit.setTime(42);
  assert.deepEqual(kit.handle('ctx'), ['probe', 'p1', 'test-command-1', 42, 0, 0x9e3779b97f4a7c15n]);
  kit.setState('anything');
  assert.equal(kit.state, 'anything');
});
