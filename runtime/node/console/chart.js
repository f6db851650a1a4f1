// Live charts from the node's own /metrics: commands per second and latency percentiles,
// sampled every second and drawn on a <canvas> by the small code below: the node-wide series
// ("all types") and one per entity type (`cella_type_commands_total{type}` and
// `cella_type_command_duration_seconds{type}`).

import { h } from './dom.js';
import { metricsText } from './api.js';

const POINTS = 90;
const QUANTILES = [0.5, 0.9, 0.99];

/** The samples of an OpenMetrics text: `{name, labels, value}`. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

/** Per group — every type together ("all types", the node-wide series) and each entity type
 * (the `cella_type_*` series, labelled `type`) — the commands counted so far and the latency
 * histogram's cumulative buckets. */
function totals(samples) {
  const groups = new Map();
  const group = (name) => {
    if (!groups.has(name)) groups.set(name, { commands: 0, buckets: new Map(), count: 0 });
    return groups.get(name);
  };
  for (const s of samples) {
    const typed = s.name.startsWith('cella_type_');
    const name = typed ? s.name.replace('cella_type_', 'cella_') : s.name;
    const g = () => group(typed ? s.labels.type || '?' : 'all types');
    if (name === 'cella_commands_total') g().commands += s.value;
    else if (name === 'cella_command_duration_seconds_bucket') {
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      const b = g().buckets;
      b.set(le, (b.get(le) || 0) + s.value);
    } else if (name === 'cella_command_duration_seconds_count') g().count += s.value;
  }
  return groups;
}

/** Quantile `q` (milliseconds) of the observations between two cumulative histograms. */
export function quantile(before, after, q) {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const delta = (le) => (after.get(le) || 0) - ((before && before.get(le)) || 0);
  const total = delta(Infinity);
  if (!(total > 0)) return null;
  const want = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const seen = delta(le);
    if (seen >= want) {
      const upper = Number.isFinite(le) ? le : lower;
      const inBucket = seen - below;
      const frac = inBucket > 0 ? (want - below) / inBucket : 1;
      return (lower + (upper - lower) * frac) * 1000;
    }
    if (Number.isFinite(le)) lower = le;
    below = seen;
  }
  return lower * 1000;
}

/** A line chart of a few series over the last POINTS samples. */
export class Chart {
  constructor(title, unit, names) {
    this.unit = unit;
    this.names = names;
    this.series = names.map(() => []);
    this.canvas = h('canvas', { class: 'chart', role: 'img', 'aria-label': `${title} (${unit})`, 'data-latest': '', 'data-points': '0' });
    this.value = h('span', { class: 'muted' }, '—');
    this.element = h('section', { class: 'panel' },
      h('div', { class: 'head' }, h('h2', {}, title, ' '), this.value),
      this.canvas,
      h('div', { class: 'legend' }, names.map((n, i) => h('span', {}, h('i', { class: `s${i}` }), n))));
  }

  push(values) {
    values.forEach((v, i) => {
      this.series[i].push(v);
      if (this.series[i].length > POINTS) this.series[i].shift();
    });
    const latest = values[0];
    this.canvas.dataset.latest = latest === null ? '' : String(Math.round(latest * 1000) / 1000);
    this.canvas.dataset.points = String(this.series[0].length);
    this.value.textContent = values.map((v, i) => `${this.names[i]} ${v === null ? '—' : fmt(v)} ${this.unit}`).join(' · ');
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 600;
    const hgt = c.clientHeight || 180;
    if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
    if (c.height !== Math.round(hgt * dpr)) c.height = Math.round(hgt * dpr);
    const ctx = c.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const style = getComputedStyle(document.documentElement);
    const colors = ['--chart-1', '--chart-2', '--chart-3'].map((v) => style.getPropertyValue(v).trim() || '#888');
    const line = style.getPropertyValue('--line').trim() || '#ccc';
    const muted = style.getPropertyValue('--muted').trim() || '#888';
    const max = Math.max(1e-9, ...this.series.flat().filter((v) => v !== null)) * 1.15;
    const pad = { l: 44, r: 8, t: 8, b: 18 };
    const x = (i) => pad.l + (i / (POINTS - 1)) * (w - pad.l - pad.r);
    const y = (v) => hgt - pad.b - (v / max) * (hgt - pad.t - pad.b);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = muted;
    ctx.strokeStyle = line;
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const v = (max / 1.15) * f;
      ctx.beginPath();
      ctx.moveTo(pad.l, y(v));
      ctx.lineTo(w - pad.r, y(v));
      ctx.stroke();
      ctx.fillText(fmt(v), 4, y(v) + 4);
    }
    this.series.forEach((points, s) => {
      const offset = POINTS - points.length;
      ctx.strokeStyle = colors[s % colors.length];
      ctx.lineWidth = 2;
      ctx.beginPath();
      let started = false;
      points.forEach((v, i) => {
        if (v === null) { started = false; return; }
        if (started) ctx.lineTo(x(offset + i), y(v));
        else { ctx.moveTo(x(offset + i), y(v)); started = true; }
      });
      ctx.stroke();
    });
  }
}

function fmt(v) {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** Samples /metrics every `ms` and feeds per-group charts made on first sight. */
export class Sampler {
  constructor(ms = 1000) {
    this.ms = ms;
    this.prev = null;
    this.charts = new Map();
    this.listeners = new Set();
    this.error = null;
  }

  start() {
    if (this.timer) return;
    const tick = async () => {
      try {
        this.sample(parseMetrics(await metricsText()), performance.now());
        this.error = null;
      } catch (e) {
        this.error = e;
      }
      this.listeners.forEach((f) => f());
    };
    tick();
    this.timer = setInterval(tick, this.ms);
  }

  sample(samples, now) {
    const groups = totals(samples);
    if (this.prev) {
      const dt = (now - this.prev.at) / 1000;
      for (const [name, g] of groups) {
        const before = this.prev.groups.get(name);
        const charts = this.chartsOf(name);
        const rate = before ? Math.max(0, g.commands - before.commands) / dt : 0;
        charts.rate.push([rate]);
        charts.latency.push(QUANTILES.map((q) => quantile(before && before.buckets, g.buckets, q)));
      }
    }
    this.prev = { at: now, groups };
  }

  chartsOf(name) {
    if (!this.charts.has(name)) {
      this.charts.set(name, {
        rate: new Chart(`Commands/s — ${name}`, '/s', ['commands']),
        latency: new Chart(`Latency — ${name}`, 'ms', QUANTILES.map((q) => `p${Math.round(q * 100)}`)),
      });
    }
    return this.charts.get(name);
  }
}
