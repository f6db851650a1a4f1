// The console's views of modules, topics, the cluster and the metrics. Each view is an async
// function of the route's parameters that returns the elements to show.

import { h, table, json, field, stat, when } from './dom.js';
import { get, request, postJson, seg } from './api.js';
import { flash, nav } from './dom.js';

/** `#/modules`: every module type, and a form to deploy a new one. */
export async function modules() {
  const { modules: list } = await get('/v1/modules');
  const rows = list.map((m) => ({
    href: `#/modules/${seg(m.type)}`,
    cells: [m.type, m.loadError ? h('span', { class: 'tag bad', title: m.loadError }, 'not loaded') : (m.kind || '—'),
      m.version === null || m.version === undefined ? '—' : `v${m.version}`,
      String(m.versions.length), h('span', {}, (m.commands || []).map((c) => h('span', { class: 'tag' }, c)))],
  }));
  return [
    h('h1', {}, 'Modules'),
    h('p', { class: 'muted' }, 'Entity types deployed on the cluster and their code versions.'),
    table([{ label: 'Type' }, { label: 'Kind' }, { label: 'Active' }, { label: 'Versions', num: true }, { label: 'Commands' }],
      rows, 'No module is deployed yet.'),
    h('h2', {}, 'Deploy a module'),
    deployForm(null),
  ];
}

/** The deploy form: a component file for `type` (or a type to name). */
function deployForm(type) {
  const typeInput = h('input', { id: 'deploy-type', name: 'type', required: true, placeholder: 'counter', value: type || '' });
  const file = h('input', { id: 'deploy-file', name: 'file', type: 'file', accept: '.wasm,application/wasm', required: true });
  const submit = h('button', { type: 'submit', id: 'deploy-submit' }, 'Deploy');
  const form = h('form', { class: 'inline panel', 'aria-label': 'Deploy a component' },
    type ? null : field('Entity type', typeInput), field('Component (.wasm)', file), submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = type || typeInput.value.trim();
    const chosen = file.files && file.files[0];
    if (!name || !chosen) return flash('error', 'Choose a type and a component file to deploy.');
    submit.disabled = true;
    try {
      const r = await request('PUT', `/v1/modules/${seg(name)}`, chosen, 'application/wasm');
      flash('ok', `Deployed ${r.type} v${r.version}${r.replayed ? ` (replayed ${r.replayed} entities)` : ''}.`);
      if (type) nav.refresh();
      else location.hash = `#/modules/${seg(name)}`;
    } catch (err) {
      flash('error', `Deploy refused: ${err.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** `#/modules/{type}`: the type's versions, roll back, deploy, delete. */
export async function module([type]) {
  const m = await get(`/v1/modules/${seg(type)}`);
  const rows = [...m.versions].reverse().map((v) => {
    const active = v.version === m.version;
    const action = active ? h('span', { class: 'tag ok' }, 'active')
      : h('button', { type: 'button', class: 'secondary', 'data-rollback': v.version, onclick: () => rollback(type, v.version) }, `Roll back to v${v.version}`);
    return { cells: [`v${v.version}`, v.kind, h('code', {}, String(v.digest).slice(0, 16)), String(v.size), when(v.createdMs), action] };
  });
  const remove = h('button', { type: 'button', class: 'danger', id: 'delete-module' }, 'Delete module');
  remove.addEventListener('click', async () => {
    if (remove.dataset.armed !== 'yes') {
      remove.dataset.armed = 'yes';
      remove.textContent = `Really delete ${type}?`;
      return;
    }
    try {
      await request('DELETE', `/v1/modules/${seg(type)}`);
      flash('ok', `Deleted ${type}.`);
      location.hash = '#/modules';
    } catch (err) {
      flash('error', `Delete refused: ${err.message}`);
    }
  });
  return [
    h('div', { class: 'crumbs' }, h('a', { href: '#/modules' }, 'Modules'), ' / ', type),
    h('h1', {}, type),
    m.loadError ? h('div', { class: 'flash error', id: 'load-error' },
      `This node could not load v${m.version}: ${m.loadError}. Deploy a version that loads, or roll back.`) : null,
    h('div', { class: 'stats' },
      h('div', { class: 'stat' }, h('b', { id: 'active-version', 'data-version': m.version ?? '' }, m.version === null ? '—' : `v${m.version}`), h('span', {}, 'active version')),
      stat('kind', m.kind || '—'), stat('versions', String(m.versions.length))),
    h('p', {}, h('a', { href: `#/entities/${seg(type)}` }, `Browse ${type} entities →`)),
    h('h2', {}, 'Commands'),
    h('p', {}, (m.commands || []).map((c) => h('span', { class: 'tag' }, c))),
    m.subscriptions && m.subscriptions.length ? [h('h2', {}, 'Subscriptions'), json(m.subscriptions)] : null,
    m.eventsTopic ? h('p', {}, 'Events topic: ', h('a', { href: `#/topics/${seg(m.eventsTopic)}` }, m.eventsTopic)) : null,
    h('h2', {}, 'Versions'),
    table([{ label: 'Version' }, { label: 'Kind' }, { label: 'Digest' }, { label: 'Bytes', num: true }, { label: 'Created' }, { label: '' }], rows),
    h('h2', {}, 'Deploy a new version'),
    deployForm(type),
    h('h2', {}, 'Danger zone'),
    h('div', { class: 'panel' }, remove),
  ];
}

async function rollback(type, version) {
  try {
    const r = await postJson(`/v1/modules/${seg(type)}/rollback`, { version });
    flash('ok', `${type} now runs v${r.version}.`);
    nav.refresh();
  } catch (err) {
    flash('error', `Rollback refused: ${err.message}`);
  }
}

/** `#/topics`: every topic, its length and subscribers. */
export async function topics() {
  const { topics: list, unreachable } = await get('/v1/topics');
  const rows = list.map((t) => ({
    href: `#/topics/${seg(t.topic)}`,
    cells: [t.topic, String(t.length), String(t.first), String(t.last), String(t.subscribers.length),
      String(t.subscribers.reduce((n, s) => n + (s.lag || 0), 0))],
  }));
  return [
    h('h1', {}, 'Topics'),
    h('p', { class: 'muted' }, 'Every topic the cluster knows, its retained messages and how far its subscribers are behind.'),
    unreachable && unreachable.length ? h('p', { class: 'flash error' }, `Nodes that did not answer: ${unreachable.join(', ')}`) : null,
    table([{ label: 'Topic' }, { label: 'Length', num: true }, { label: 'First', num: true }, { label: 'Last', num: true },
      { label: 'Subscribers', num: true }, { label: 'Lag', num: true }], rows, 'No topic has messages or subscribers.'),
  ];
}

/** `#/topics/{topic}`: one topic and its subscriptions' cursors. */
export async function topic([name]) {
  const t = await get(`/v1/topics/${seg(name)}`);
  const rows = t.subscribers.map((s) => ({
    href: `#/modules/${seg(s.type)}`,
    cells: [s.type, s.command, h('code', {}, JSON.stringify(s.key)), String(s.delivered), String(s.failures), String(s.lag),
      s.lastFailure ? `${s.lastFailure.offset}: ${s.lastFailure.reason}` : '—'],
  }));
  return [
    h('div', { class: 'crumbs' }, h('a', { href: '#/topics' }, 'Topics'), ' / ', name),
    h('h1', {}, name),
    h('div', { class: 'stats' }, stat('messages', String(t.length)), stat('first offset', String(t.first)), stat('last offset', String(t.last))),
    h('h2', {}, 'Subscribers'),
    table([{ label: 'Type' }, { label: 'Command' }, { label: 'Key' }, { label: 'Delivered', num: true }, { label: 'Failures', num: true },
      { label: 'Lag', num: true }, { label: 'Last failure' }], rows, 'No subscriber.'),
  ];
}

/** `#/cluster`: the nodes, and every group's leader, replicas and indexes as this node sees them. */
export async function cluster() {
  const c = await get('/v1/cluster');
  const nodes = c.nodes.map((n) => ({ cells: [String(n.id), n.addr, n.id === c.nodeId ? h('span', { class: 'tag ok' }, 'this node') : ''] }));
  const groups = c.groups.map((g) => ({
    cells: [g.group === 0 ? '0 (metadata)' : String(g.group), g.state, g.leader ?? '—', String(g.term),
      [...g.voters, ...g.learners.map((l) => `${l} (learner)`)].join(', '),
      String(g.lastLogIndex), String(g.committed), String(g.applied), String(Math.max(0, g.committed - g.applied))],
  }));
  return [
    h('h1', {}, 'Cluster'),
    h('p', { class: 'muted' }, 'The nodes, and every raft group as this node sees it.'),
    h('div', { class: 'stats' }, stat('nodes', String(c.nodes.length)), stat('partitions', String(c.partitions)),
      stat('replicas', String(c.replicas)), stat('shards', String(c.shards)), stat('this node', String(c.nodeId))),
    h('h2', {}, 'Nodes'),
    h('div', { id: 'cluster-nodes' }, table([{ label: 'Id' }, { label: 'Address' }, { label: '' }], nodes)),
    h('h2', {}, 'Groups'),
    table([{ label: 'Group' }, { label: 'State here' }, { label: 'Leader' }, { label: 'Term', num: true }, { label: 'Replicas' },
      { label: 'Log index', num: true }, { label: 'Committed', num: true }, { label: 'Applied', num: true }, { label: 'Apply lag', num: true }], groups),
  ];
}

/** `#/metrics`: the live charts (the sampler runs for the whole page). */
export function metrics(_params, sampler) {
  const box = h('div', { class: 'grid', id: 'charts' });
  const status = h('p', { class: 'muted' }, 'Sampling /metrics every second…');
  const fill = () => {
    for (const charts of sampler.charts.values()) {
      if (!charts.rate.element.isConnected) box.append(charts.rate.element, charts.latency.element);
      charts.rate.draw();
      charts.latency.draw();
    }
    status.textContent = sampler.error ? `Cannot read /metrics: ${sampler.error.message}` : 'Sampling /metrics every second.';
  };
  fill();
  sampler.listeners.add(fill);
  return { elements: [h('h1', {}, 'Metrics'), status, box], cleanup: () => sampler.listeners.delete(fill) };
}
