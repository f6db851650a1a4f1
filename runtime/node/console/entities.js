// The console's entity views: the entities of a type (search by key prefix, paged) and one
// entity (state, pending effects and timers, journal timeline, a command form).

import { h, table, json, field, stat, when, flash, nav } from './dom.js';
import { get, request, seg } from './api.js';

const PAGE = 50;
const JOURNAL_PAGE = 50;

/** `#/entities`: the types to browse. */
export async function types() {
  const { modules } = await get('/v1/modules');
  const rows = modules.map((m) => ({ href: `#/entities/${seg(m.type)}`, cells: [m.type, (m.commands || []).join(', ')] }));
  return [
    h('h1', {}, 'Entities'),
    h('p', { class: 'muted' }, 'Choose an entity type to browse its entities.'),
    table([{ label: 'Type' }, { label: 'Commands' }], rows, 'No module is deployed yet.'),
  ];
}

/** `#/entities/{type}?prefix=P&after=K`: one page of the type's entities. */
export async function list([type], query) {
  const prefix = query.get('prefix') || '';
  const after = query.get('after') || '';
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (prefix) params.set('prefix', prefix);
  if (after) params.set('after', after);
  const page = await get(`/v1/entities/${seg(type)}?${params}`);
  const rows = page.entities.map((e) => ({
    href: `#/entities/${seg(type)}/${seg(e.key)}`,
    cells: [e.key, String(e.sequence), e.moduleVersion ? `v${e.moduleVersion}` : '—', when(e.lastChangeMs)],
  }));
  const input = h('input', { id: 'entity-prefix', name: 'prefix', type: 'search', value: prefix, placeholder: 'key prefix', autocomplete: 'off' });
  const search = h('form', { class: 'inline panel', role: 'search', 'aria-label': `Search ${type} entities` },
    field('Key starts with', input), h('button', { type: 'submit', id: 'entity-search' }, 'Search'),
    prefix ? h('a', { href: `#/entities/${seg(type)}` }, 'Clear') : null);
  search.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (input.value) q.set('prefix', input.value);
    location.hash = `#/entities/${seg(type)}${q.size ? `?${q}` : ''}`;
  });
  const keyInput = h('input', { id: 'entity-key', name: 'key', placeholder: 'exact key', autocomplete: 'off' });
  const open = h('form', { class: 'inline panel', 'aria-label': 'Open an entity by key' },
    field('Open a key', keyInput), h('button', { type: 'submit', class: 'secondary' }, 'Open'));
  open.addEventListener('submit', (e) => {
    e.preventDefault();
    if (keyInput.value) location.hash = `#/entities/${seg(type)}/${seg(keyInput.value)}`;
  });
  const pageQuery = (next) => {
    const q = new URLSearchParams();
    if (prefix) q.set('prefix', prefix);
    if (next) q.set('after', next);
    return `#/entities/${seg(type)}${q.size ? `?${q}` : ''}`;
  };
  return [
    h('div', { class: 'crumbs' }, h('a', { href: '#/entities' }, 'Entities'), ' / ', type),
    h('h1', {}, `${type} entities`),
    h('div', { class: 'grid' }, search, open),
    h('div', { id: 'entity-list' }, table([{ label: 'Key' }, { label: 'Sequence', num: true }, { label: 'Module version' }, { label: 'Last change' }],
      rows, prefix ? `No ${type} entity has a key starting with “${prefix}”.` : `No ${type} entity yet.`)),
    h('nav', { class: 'pager', 'aria-label': 'Pages' },
      after ? h('a', { href: pageQuery(null) }, '« First page') : null,
      page.next ? h('a', { href: pageQuery(page.next), id: 'next-page' }, 'Next page »') : null,
      h('span', { class: 'muted' }, `${page.entities.length} shown${after ? ` after “${after}”` : ''}`)),
  ];
}

/** `#/entities/{type}/{key}?from=N`: the entity's state, pending work, journal and a command form. */
export async function entity([type, key], query) {
  const from = Math.max(1, Number(query.get('from')) || 1);
  const [state, journal, mod] = await Promise.all([
    get(`/v1/entities/${seg(type)}/${seg(key)}`),
    get(`/v1/entities/${seg(type)}/${seg(key)}/journal?from=${from}&limit=${JOURNAL_PAGE}`),
    get(`/v1/modules/${seg(type)}`).catch(() => null),
  ]);
  const base = `#/entities/${seg(type)}/${seg(key)}`;
  const entries = journal.entries.map((e) => h('li', { 'data-seq': e.seq },
    h('div', { class: 'head' }, h('b', {}, `#${e.seq}`), h('code', {}, e.command),
      h('span', { class: 'tag', 'data-module-version': e.moduleVersion }, `module v${e.moduleVersion}`),
      h('span', { class: 'muted' }, when(e.timestampMs))),
    e.events ? json(e.events) : null,
    e.state !== undefined ? [h('span', { class: 'muted' }, 'state written:'), json(e.state)] : null));
  const pending = [
    ...state.effects.map((f) => ({ cells: ['call', `${f.target.type}/${f.target.key}`, f.command, when(f.createdMs)] })),
    ...state.timers.map((t) => ({ cells: [`timer ${t.name}`, '—', t.command, when(t.dueMs)] })),
  ];
  return [
    h('div', { class: 'crumbs' }, h('a', { href: '#/entities' }, 'Entities'), ' / ',
      h('a', { href: `#/entities/${seg(type)}` }, type), ' / ', h('span', { id: 'entity-key-shown' }, key)),
    h('h1', {}, h('span', { class: 'muted' }, `${type} / `), key),
    h('div', { class: 'stats' }, stat('sequence', String(state.sequence)), stat('module version', state.moduleVersion ? `v${state.moduleVersion}` : '—'),
      stat('pending calls', String(state.effects.length)), stat('timers', String(state.timers.length))),
    h('div', { class: 'grid' },
      h('section', {}, h('h2', {}, 'State'), h('div', { id: 'entity-state' }, json(state.state))),
      h('section', {}, h('h2', {}, 'Run a command'), commandForm(type, key, mod ? mod.commands || [] : []))),
    h('h2', {}, 'Pending effects and timers'),
    table([{ label: 'Kind' }, { label: 'Target' }, { label: 'Command' }, { label: 'Created / due' }], pending, 'Nothing pending.'),
    h('h2', {}, 'Journal'),
    entries.length ? h('ol', { class: 'timeline', id: 'journal' }, entries) : h('p', { class: 'muted', id: 'journal' }, 'No journal entry here.'),
    h('nav', { class: 'pager', 'aria-label': 'Journal pages' },
      from > 1 ? h('a', { href: `${base}?from=${Math.max(1, from - JOURNAL_PAGE)}` }, '« Earlier') : null,
      entries.length === JOURNAL_PAGE ? h('a', { href: `${base}?from=${from + JOURNAL_PAGE}` }, 'Later »') : null),
  ];
}

/** A form that runs one of the module's commands with a JSON body and shows the reply. */
function commandForm(type, key, commands) {
  const select = h('select', { id: 'command-name', name: 'command' }, commands.map((c) => h('option', { value: c }, c)));
  const body = h('textarea', { id: 'command-body', name: 'body', placeholder: 'JSON body (empty for null)', spellcheck: 'false' });
  const form = h('form', { class: 'panel', 'aria-label': 'Run a command' },
    field('Command', select), field('Body', body), h('div', { class: 'pager' }, h('button', { type: 'submit', id: 'command-run' }, 'Run')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const text = body.value.trim();
      if (text) JSON.parse(text);
      const r = await request('POST', `/v1/entities/${seg(type)}/${seg(key)}/${seg(select.value)}`, text, 'application/json');
      flash('ok', `${select.value} replied: ${JSON.stringify(r)}`);
      nav.refresh();
    } catch (err) {
      flash('error', `Command failed: ${err.message}`);
    }
  });
  return form;
}
