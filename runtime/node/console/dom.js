// Building the page: every element is made with createElement and every piece of data goes in
// as a text node, so a key like <script> is shown, never run.

/** An element `tag` with attributes (`on*` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children: nodes as they are, anything else as text. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A table: `columns` are `{label, num}`, each row `{cells, href}`; a row with `href` opens on
 *  Enter or a click (its first cell holds a link, so it is reachable by Tab). */
export function table(columns, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.map((row) => {
    const cells = row.cells.map((cell, i) => {
      const content = i === 0 && row.href ? h('a', { href: row.href }, cell) : cell;
      return h('td', { class: columns[i] && columns[i].num ? 'num' : null }, content);
    });
    const tr = h('tr', { class: row.href ? 'link' : null }, cells);
    if (row.href) {
      tr.addEventListener('click', (e) => {
        if (!e.target.closest('a, button, input, select, textarea')) location.hash = row.href;
      });
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && e.target === tr) location.hash = row.href;
      });
      tr.tabIndex = -1;
    }
    return tr;
  });
  return h('table', {}, h('thead', {}, head), h('tbody', {}, body));
}

/** Pretty JSON of `value`, as text in a <pre>. */
export function json(value) {
  return h('pre', {}, JSON.stringify(value, null, 2));
}

/** A labelled form field around `control` (which must have an id). */
export function field(label, control) {
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
}

/** A small figure: a value over its label. */
export function stat(label, value) {
  return h('div', { class: 'stat' }, h('b', {}, value), h('span', {}, label));
}

/** A date from milliseconds since the epoch, or a dash. */
export function when(ms) {
  if (ms === null || ms === undefined) return '—';
  return new Date(ms).toLocaleString();
}

/** Shows a message above the view (errors stay until the next one or a navigation). */
export function flash(kind, message) {
  const box = document.getElementById('flash');
  if (!box) return;
  replace(box, h('div', { class: `flash ${kind}`, 'data-kind': kind }, message));
}

/** Clears the message above the view. */
export function clearFlash() {
  const box = document.getElementById('flash');
  if (box) box.replaceChildren();
}

/** Navigation hooks the app fills in: `refresh()` draws the current view again. */
export const nav = { refresh: () => {} };
