// The size budget of the served tag (one integration configured) and the
// shape of the two built files: the main tag the server substitutes its
// configuration into, and the extension it serves as is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { PLACEHOLDER } from '../build.mjs';
import { config, extSource, tagSource, withConfig } from './support/harness.ts';

/** The budget (issue 4): the served tag with one integration in 3 KB gzipped. */
export const BUDGET = 3072;

const gz = (s: string) => gzipSync(s, { level: 9 }).length;

test('the built tag holds the configuration placeholder exactly once', async () => {
  const src = await tagSource();
  assert.equal(src.split(PLACEHOLDER).length, 2);
  assert.doesNotMatch(src, /\n./, 'one minified line');
});

test('the served tag is valid JavaScript with the configuration substituted', async () => {
  const served = withConfig(await tagSource(), config());
  assert.doesNotThrow(() => new Function(served));
});

test(`the served tag with one integration fits ${BUDGET} bytes gzipped`, async (t) => {
  // Gala Partners as the server sends it: its group (two link patterns),
  // AutoScan on with the six default prefixes, the three pixels, the
  // extension's URL.
  const served = withConfig(await tagSource(), config());
  const ext = await extSource();
  t.diagnostic(`served tag (Gala Partners configured): ${served.length} bytes, ${gz(served)} bytes gzipped (budget ${BUDGET})`);
  t.diagnostic(`extension (loaded on demand): ${ext.length} bytes, ${gz(ext)} bytes gzipped`);
  assert.ok(gz(served) <= BUDGET, `${gz(served)} bytes gzipped, budget ${BUDGET}`);
});

test('the extension is an ES module without configuration', async () => {
  const ext = await extSource();
  assert.ok(!ext.includes(PLACEHOLDER));
  assert.match(ext, /export\s*\{[^}]*\};?\s*$/);
  for (const name of ['p', 'h', 's', 'f']) assert.match(ext, new RegExp(`as ${name}[,}]`), `exports ${name}`);
});
