#!/usr/bin/env node
/*
 * Builds a JavaScript entity into a `cella:entity@0.2.0` component: bundles the entry module
 * and everything it imports (the SDK included) into one ES module with esbuild, beside the
 * optional `fold` export, then runs componentize-js on it against the `folding-entity-world`
 * of wit/entity.wit.
 *
 *   node tools/componentize.mjs --entry src/index.js --out target/my-entity.wasm
 *        [--wit PATH] [--tools-from DIR] [--tools-fallback DIR] [--bundle-out FILE]
 *
 * The tools (componentize-js, esbuild) are loaded from the `node_modules` of `--tools-from`
 * (default: the entry's directory) or its parents, so a project that pins its own versions
 * builds with them, else from `--tools-fallback` (`cella build` runs this file from the SDK copy
 * in $CELLA_HOME and falls back to the toolchain it installs there once per version).
 * `--bundle-out` keeps the bundled module: the line numbers of a guest's stack traces are its.
 *
 * Pinned versions (sdk-guest/js/package.json, exact, with a committed package-lock.json):
 * - @bytecodealliance/componentize-js 0.23.0, the newest release when pinned: it runs on
 *   Node 20 and its components (StarlingMonkey, WASI 0.2.12 imports) instantiate on the
 *   node's wasmtime 48, whose linker matches 0.2.x imports semver-compatibly, so no older
 *   release was needed. Ahead-of-time compilation (weval) is not used: measured with weval
 *   0.5.0 built from crates.io, its counter was slower than the interpreted one, on a hot key
 *   and over 1,000 keys, and 44% larger (docs/benchmarks.md).
 * - esbuild 0.28.2 (Node >= 18) for bundling, since componentize-js takes one module.
 * - @bytecodealliance/jco 1.35.0 (already a dependency of componentize-js) for `jco wit`,
 *   which prints a built component's imports and exports.
 * - @bytecodealliance/preview2-shim 0.25.0: componentize-js imports it at build time but lists
 *   it only among its development dependencies, so a clean `npm ci` would miss it. Not 0.26:
 *   0.26 no longer preopens `/` by default, and componentize-js's WIT reader then cannot open a
 *   WIT file outside the working directory.
 *
 * Engine features: everything but `stdio` is disabled (`random`, `clocks`, `http`,
 * `fetch-event`), so the component imports only `cella:entity/types`, `wasi:io`, `wasi:cli`
 * and, through the WASI adapter inside the engine, `wasi:clocks/wall-clock` and
 * `wasi:filesystem` (both linked inert by the node). `stdio` stays: console output and the
 * report of an uncaught exception go to stderr, whose tail the node attaches to a trap.
 */

import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/** wit/entity.wit, next to sdk-guest/ both in the repository and in the SDK copy. */
export const DEFAULT_WIT = resolve(HERE, '../../../wit/entity.wit');

/** The engine features the component does without (see the header). */
export const DISABLED_FEATURES = ['random', 'clocks', 'http', 'fetch-event'];

/** Thrown for a failure with a message meant for the user (no stack needed). */
export class BuildError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BuildError';
  }
}

/** The entry file of a package for `import`, from its package.json. */
function packageEntry(dir, manifest) {
  const pick = (target) => {
    if (typeof target === 'string') {
      return target;
    }
    if (target === null || typeof target !== 'object') {
      return undefined;
    }
    if ('.' in target) {
      return pick(target['.']);
    }
    for (const condition of ['import', 'node', 'default', 'require']) {
      if (condition in target) {
        const found = pick(target[condition]);
        if (found !== undefined) {
          return found;
        }
      }
    }
    return undefined;
  };
  return join(dir, pick(manifest.exports) ?? manifest.main ?? 'index.js');
}

/** The directory of package `name` in the `node_modules` of `from` or a parent, if any. */
function findPackage(name, from) {
  let dir = resolve(from);
  for (;;) {
    const pkgDir = join(dir, 'node_modules', name);
    if (existsSync(join(pkgDir, 'package.json'))) {
      return pkgDir;
    }
    const parent = dirname(dir);
    if (parent === dir) {
      return undefined;
    }
    dir = parent;
  }
}

/**
 * Imports the package `name` from the `node_modules` of the first directory of `from` (a
 * directory or a list of them, each searched with its parents) that has it.
 * @param {string} name
 * @param {string | string[]} from
 * @returns {Promise<{module: any, version: string, dir: string}>}
 */
export async function loadTool(name, from) {
  const dirs = (Array.isArray(from) ? from : [from]).filter((d) => d !== undefined).map((d) => resolve(d));
  for (const dir of dirs) {
    const pkgDir = findPackage(name, dir);
    if (pkgDir !== undefined) {
      const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
      const module = await import(pathToFileURL(packageEntry(pkgDir, manifest)).href);
      return { module, version: manifest.version, dir: pkgDir };
    }
  }
  throw new BuildError(
    `cannot find the package \`${name}\` in the node_modules of ${dirs.join(' or ')} (or their parents)\n` +
      `hint: run \`npm install\` in the project, or add ${name} to its devDependencies`,
  );
}

/** esbuild's options for the one ES module componentize-js takes. */
const BUNDLE = {
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  outfile: 'entity.js',
  logLevel: 'silent',
};

/**
 * Bundles `entry` into one ES module and checks that it exports `entity`.
 * @param {string} entry
 * @param {string | string[]} tools where to look for esbuild (see `loadTool`)
 * @returns {Promise<string>} the bundled source
 */
export async function bundle(entry, tools) {
  const { module } = await loadTool('esbuild', tools);
  const esbuild = module.build ? module : module.default;
  let result;
  try {
    result = await esbuild.build({ ...BUNDLE, entryPoints: [entry], metafile: true });
  } catch (error) {
    const messages = (error.errors ?? []).map((m) =>
      m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text,
    );
    throw new BuildError(
      `bundling ${entry} failed:\n${messages.length > 0 ? messages.join('\n') : error.message}`,
    );
  }
  const output = Object.values(result.metafile.outputs)[0];
  if (!output.exports.includes('entity')) {
    throw new BuildError(
      `${entry} does not export \`entity\`\nhint: export the entity as the WIT interface: ` +
        '`export const entity = valueEntity({...})` (or eventSourcedEntity, crdtEntity)',
    );
  }
  // The component also exports the optional `fold` interface (world `folding-entity-world`):
  // the entry's `entity` with the fold its glue offers, or `apply` per event for an entity
  // object written by hand.
  try {
    const folding = await esbuild.build({
      ...BUNDLE,
      stdin: { contents: foldingEntry(entry), resolveDir: dirname(entry), sourcefile: 'cella-fold.js' },
    });
    return folding.outputFiles[0].text;
  } catch (error) {
    throw new BuildError(`bundling ${entry} with its fold export failed: ${error.message}`);
  }
}

/** The module bundled as the component: `entry`'s `entity`, and `fold` beside it. */
export function foldingEntry(entry) {
  const from = JSON.stringify(entry);
  return `import { entity } from ${from};
export { entity };
export const fold = {
  applyAll(state, events) {
    if (typeof entity.applyAll === 'function') {
      return entity.applyAll(state, events);
    }
    let folded = state;
    for (const event of events) {
      const applied = entity.apply(folded, event);
      if (applied.tag !== 'ok') {
        return applied;
      }
      folded = applied.val;
    }
    return { tag: 'ok', val: folded };
  },
};
`;
}

/**
 * Builds `entry` into the component `out`.
 * @param {{entry: string, out: string, wit?: string, toolsFrom?: string,
 *   toolsFallback?: string, bundleOut?: string}} options
 * @returns {Promise<{bytes: number, ms: number}>}
 */
export async function buildComponent({ entry, out, wit = DEFAULT_WIT, toolsFrom, toolsFallback, bundleOut }) {
  const started = Date.now();
  entry = resolve(entry);
  if (!existsSync(entry)) {
    throw new BuildError(`the entry module ${entry} does not exist`);
  }
  if (!existsSync(wit)) {
    throw new BuildError(`the WIT contract ${wit} does not exist`);
  }
  const tools = [toolsFrom ?? dirname(entry), toolsFallback];
  const source = await bundle(entry, tools);
  if (bundleOut !== undefined) {
    mkdirSync(dirname(resolve(bundleOut)), { recursive: true });
    writeFileSync(bundleOut, source);
  }
  const { module } = await loadTool('@bytecodealliance/componentize-js', tools);

  // componentize-js reads the source from a file; stack traces name it.
  const work = mkdtempSync(join(tmpdir(), 'cella-js-'));
  try {
    const name = basename(out, extname(out)) || 'entity';
    const sourcePath = join(work, `${name}.js`);
    writeFileSync(sourcePath, source);
    let component;
    try {
      ({ component } = await module.componentize({
        sourcePath,
        witPath: wit,
        worldName: 'folding-entity-world',
        disableFeatures: DISABLED_FEATURES,
      }));
    } catch (error) {
      throw new BuildError(`componentize-js failed on ${entry}:\n${error.message ?? error}`);
    }
    // Through a rename, so that a reader (a file watcher, say) never sees half a component.
    mkdirSync(dirname(resolve(out)), { recursive: true });
    const partial = join(dirname(resolve(out)), `.${basename(out)}.partial`);
    writeFileSync(partial, component);
    renameSync(partial, out);
    return { bytes: component.length, ms: Date.now() - started };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function usage() {
  return (
    'usage: node componentize.mjs --entry FILE --out FILE [--wit FILE] [--tools-from DIR] ' +
    '[--tools-fallback DIR] [--bundle-out FILE]'
  );
}

async function main(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const key = {
      '--entry': 'entry',
      '--out': 'out',
      '--wit': 'wit',
      '--tools-from': 'toolsFrom',
      '--tools-fallback': 'toolsFallback',
      '--bundle-out': 'bundleOut',
    }[flag];
    if (key === undefined || value === undefined) {
      throw new BuildError(usage());
    }
    options[key] = value;
  }
  if (options.entry === undefined || options.out === undefined) {
    throw new BuildError(usage());
  }
  const { bytes, ms } = await buildComponent(options);
  console.error(`built ${options.out} (${(bytes / 1048576).toFixed(1)} MiB in ${(ms / 1000).toFixed(1)} s)`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error instanceof BuildError ? `error: ${error.message}` : error);
    process.exit(1);
  });
}
