// The console's entry point: the hash router (`#/modules`, `#/entities/counter/k1`, ...), the
// navigation's current-page marks and the token form. A reload or a shared link keeps the view.

import { h, replace, clearFlash, flash, nav } from './dom.js';
import { token, setToken } from './api.js';
import * as views from './views.js';
import * as entities from './entities.js';
import { Sampler } from './chart.js';

const sampler = new Sampler(1000);

/** Routes: section, number of path segments after it, view. */
const ROUTES = [
  ['modules', 0, views.modules],
  ['modules', 1, views.module],
  ['entities', 0, entities.types],
  ['entities', 1, entities.list],
  ['entities', 2, entities.entity],
  ['topics', 0, views.topics],
  ['topics', 1, views.topic],
  ['cluster', 0, views.cluster],
  ['metrics', 0, views.metrics],
];

/** The current hash as a section, decoded path segments and query. */
function current() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?', 2);
  let parts;
  try {
    parts = path.split('/').filter((p) => p !== '').map(decodeURIComponent);
  } catch {
    parts = [];
  }
  const section = parts.shift() || 'modules';
  return { section, params: parts, query: new URLSearchParams(query) };
}

let generation = 0;
let cleanup = null;

/** Draws the view the hash names (`clear`: and drops the message shown above it). */
async function render(clear) {
  const mine = ++generation;
  const view = document.getElementById('view');
  const { section, params, query } = current();
  for (const a of document.querySelectorAll('.sidebar a[data-section]')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (clear) clearFlash();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const route = ROUTES.find(([s, n]) => s === section && n === params.length);
  if (!route) {
    replace(view, h('h1', {}, 'Not found'), h('p', {}, 'No view for ', h('code', {}, location.hash), '. ', h('a', { href: '#/modules' }, 'Go to modules')));
    return;
  }
  view.setAttribute('aria-busy', 'true');
  try {
    const out = await route[2](params, section === 'metrics' ? sampler : query);
    if (mine !== generation) return;
    if (out && out.cleanup) {
      cleanup = out.cleanup;
      replace(view, out.elements);
    } else {
      replace(view, out);
    }
    document.title = `${[section, ...params].join(' / ')} · Cella`;
    view.dataset.rendered = String(Number(view.dataset.rendered || 0) + 1);
  } catch (err) {
    if (mine !== generation) return;
    replace(view, h('h1', {}, 'Could not load this view'), h('p', { class: 'flash error', 'data-kind': 'error' }, err.message),
      h('p', {}, h('button', { type: 'button', onclick: () => render(false) }, 'Try again')));
  } finally {
    if (mine === generation) view.removeAttribute('aria-busy');
  }
}

function tokenForm() {
  const form = document.getElementById('token-form');
  const input = document.getElementById('token');
  const state = document.getElementById('token-state');
  const show = () => {
    state.textContent = token() ? 'Token set for this tab: sent with every request.' : 'No token: open reads only.';
  };
  input.value = token();
  show();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    show();
    flash('ok', token() ? 'Token saved for this tab.' : 'Token cleared.');
    render(false);
  });
  document.getElementById('token-clear').addEventListener('click', () => {
    input.value = '';
    setToken('');
    show();
    render(false);
  });
}

nav.refresh = () => render(false);
// The skip link moves focus without touching the hash (which holds the route).
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main').focus();
});
window.addEventListener('hashchange', () => {
  if (!location.hash.startsWith('#/')) return;
  render(true);
  const main = document.getElementById('main');
  if (main && document.activeElement && document.activeElement.closest('.sidebar')) main.focus({ preventScroll: true });
});
tokenForm();
sampler.start();
if (!location.hash.startsWith('#/')) history.replaceState(null, '', '#/modules');
render(true);
