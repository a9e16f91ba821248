// Builds the tag into one minified IIFE: `node build.mjs` writes
// dist/clicktrail.min.js; `node build.mjs --check` builds into a temporary
// file and fails when the committed dist differs (the build is deterministic:
// esbuild is pinned in package-lock.json).
import * as esbuild from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const PLACEHOLDER = '__CLICKTRAIL_CONFIG__';
export const DIST = join(here, 'dist', 'clicktrail.min.js');

/** The built tag as text. */
export async function buildTag() {
  const out = await esbuild.build({
    entryPoints: [join(here, 'src', 'main.ts')],
    bundle: true,
    minify: true,
    format: 'iife',
    target: 'es2020',
    platform: 'browser',
    legalComments: 'none',
    charset: 'utf8',
    write: false,
    logLevel: 'silent',
  });
  const text = out.outputFiles[0].text;
  const n = text.split(PLACEHOLDER).length - 1;
  if (n !== 1) throw new Error(`the built tag must hold ${PLACEHOLDER} exactly once, found ${n}`);
  return text;
}

async function main() {
  const text = await buildTag();
  if (process.argv.includes('--check')) {
    const dir = mkdtempSync(join(tmpdir(), 'clicktrail-tag-'));
    try {
      const fresh = join(dir, 'clicktrail.min.js');
      writeFileSync(fresh, text);
      let committed = '';
      try {
        committed = readFileSync(DIST, 'utf8');
      } catch {
        // missing counts as different
      }
      if (committed !== readFileSync(fresh, 'utf8')) {
        console.error(`dist/clicktrail.min.js is out of date: run \`npm run build\` in tag/ and commit it`);
        process.exit(1);
      }
      console.log(`dist/clicktrail.min.js is up to date (${text.length} bytes)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return;
  }
  mkdirSync(dirname(DIST), { recursive: true });
  writeFileSync(DIST, text);
  console.log(`wrote dist/clicktrail.min.js (${text.length} bytes)`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e.message || e);
    process.exit(1);
  });
}
