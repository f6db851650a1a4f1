/*
 * Unit tests of the build tools (build-examples.mjs, tools/componentize.mjs) that need no
 * component build: their refusals and the bundling step.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { BuildError, bundle, loadTool } from '../tools/componentize.mjs';

const SDK = join(dirname(fileURLToPath(import.meta.url)), '..');

function scratch(t) {
  const dir = mkdtempSync(join(tmpdir(), 'cella-js-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('build-examples says how to install the tools when node_modules is missing', (t) => {
  const dir = scratch(t);
  copyFileSync(join(SDK, 'build-examples.mjs'), join(dir, 'build-examples.mjs'));
  const run = spawnSync(process.execPath, [join(dir, 'build-examples.mjs'), join(dir, 'out')], { encoding: 'utf8' });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /node_modules is missing/);
  assert.match(run.stderr, /hint: npm ci --prefix /);
});

test('build-examples refuses unknown examples and a missing OUT_DIR', () => {
  const none = spawnSync(process.execPath, [join(SDK, 'build-examples.mjs')], { encoding: 'utf8' });
  assert.equal(none.status, 1);
  assert.match(none.stderr, /usage: /);
  const unknown = spawnSync(process.execPath, [join(SDK, 'build-examples.mjs'), 'out', 'nope'], { encoding: 'utf8' });
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /unknown example `nope`/);
});

test('a tool that is not installed is a BuildError with a hint', async (t) => {
  await assert.rejects(loadTool('esbuild', scratch(t)), (e) => e instanceof BuildError && /hint: run `npm install`/.test(e.message));
});

test('bundling inlines the SDK and requires an `entity` export', async (t) => {
  const dir = scratch(t);
  const entry = join(dir, 'index.js');
  const sdk = join(SDK, 'src', 'cella.js');
  writeFileSync(entry, `import { valueEntity } from ${JSON.stringify(sdk)};\nexport const entity = valueEntity({ initialState: 0, commands: { get: (s) => s } });\n`);
  const source = await bundle(entry, SDK);
  assert.doesNotMatch(source, /^import /m);
  assert.match(source, /export \{[^}]*\bentity\b/);

  writeFileSync(entry, 'export const notTheEntity = 1;\n');
  await assert.rejects(bundle(entry, SDK), (e) => e instanceof BuildError && /does not export `entity`/.test(e.message));

  writeFileSync(entry, 'import "./missing.js";\nexport const entity = {};\n');
  await assert.rejects(bundle(entry, SDK), (e) => e instanceof BuildError && /missing\.js/.test(e.message));
});
