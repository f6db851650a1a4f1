#!/usr/bin/env node
/*
 * Builds the JavaScript examples into components:
 *
 *   node sdk-guest/js/build-examples.mjs OUT_DIR [NAME...]
 *
 * writes OUT_DIR/{counter,shopping-cart,tck-value,tck-events,tck-crdt}.wasm (or only the NAMEs
 * given) from sdk-guest/js/examples/<name>/index.js, one after the other (each build is
 * CPU-bound).
 * Needs the SDK's pinned tools: `npm ci --prefix sdk-guest/js`.
 */

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const EXAMPLES = ['counter', 'shopping-cart', 'tck-value', 'tck-events', 'tck-crdt'];

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(1);
}

const [outDir, ...names] = process.argv.slice(2);
if (outDir === undefined || outDir.startsWith('-')) {
  fail(`usage: node build-examples.mjs OUT_DIR [${EXAMPLES.join('|')}...]`);
}
for (const name of names) {
  if (!EXAMPLES.includes(name)) {
    fail(`unknown example \`${name}\` (the examples are ${EXAMPLES.join(', ')})`);
  }
}
if (!existsSync(join(HERE, 'node_modules', '@bytecodealliance', 'componentize-js'))) {
  fail(
    `${join(HERE, 'node_modules')} is missing (or incomplete): the JavaScript SDK's build tools ` +
      `are not installed\nhint: npm ci --prefix ${resolve(HERE)}`,
  );
}

// Imported only now, so that a missing node_modules gets the message above.
const { buildComponent, BuildError } = await import('./tools/componentize.mjs');

for (const name of names.length > 0 ? names : EXAMPLES) {
  const out = join(resolve(outDir), `${name}.wasm`);
  try {
    const { bytes, ms } = await buildComponent({
      entry: join(HERE, 'examples', name, 'index.js'),
      out,
      toolsFrom: HERE,
    });
    console.error(
      `built ${out} (${(bytes / 1048576).toFixed(1)} MiB in ${(ms / 1000).toFixed(1)} s)`,
    );
  } catch (error) {
    fail(error instanceof BuildError ? error.message : (error.stack ?? String(error)));
  }
}
