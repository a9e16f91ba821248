// Builds the tag: the main tag, a minified IIFE (dist/clicktrail.min.js,
// served with a property's configuration), and its extension, a minified ES
// module (dist/clicktrail-ext.min.js, served as is; README "Extension").
// `node build.mjs` writes both; `node build.mjs --check` builds them in
// memory and fails when a committed file differs (the build is
// deterministic: esbuild is pinned in package-lock.json).
import * as esbuild from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const PLACEHOLDER = '__CLICKTRAIL_CONFIG__';
export const DIST = join(here, 'dist', 'clicktrail.min.js');
export const DIST_EXT = join(here, 'dist', 'clicktrail-ext.min.js');

const bundle = async (entry, format) => {
  const out = await esbuild.build({
    entryPoints: [join(here, 'src', entry)],
    bundle: true,
    minify: true,
    format,
    target: 'es2020',
    platform: 'browser',
    legalComments: 'none',
    charset: 'utf8',
    write: false,
    logLevel: 'silent',
  });
  return out.outputFiles[0].text;
};

/** The built main tag as text. */
export async function buildTag() {
  const text = await bundle('main.ts', 'iife');
  // The one dynamic import (of the extension) is what the tests hook.
  if (text.split('import(').length !== 2) throw new Error('the built tag must import() exactly once');
  const n = text.split(PLACEHOLDER).length - 1;
  if (n !== 1) throw new Error(`the built tag must hold ${PLACEHOLDER} exactly once, found ${n}`);
  return text;
}

/** The built extension as text. */
export async function buildExt() {
  const text = await bundle('ext.ts', 'esm');
  if (text.includes(PLACEHOLDER)) throw new Error(`the extension must not hold ${PLACEHOLDER}`);
  return text;
}

async function main() {
  const files = [
    [DIST, await buildTag()],
    [DIST_EXT, await buildExt()],
  ];
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [path, text] of files) {
    const name = 'dist/' + path.split(/[\\/]/).pop();
    if (check) {
      let committed = '';
      try {
        committed = readFileSync(path, 'utf8');
      } catch {
        // missing counts as different
      }
      if (committed === text) console.log(`${name} is up to date (${text.length} bytes)`);
      else {
        console.error(`${name} is out of date: run \`npm run build\` in tag/ and commit it`);
        stale++;
      }
    } else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      console.log(`wrote ${name} (${text.length} bytes)`);
    }
  }
  if (stale) process.exit(1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e.message || e);
    process.exit(1);
  });
}
