// The size budget of the served tag (one integration configured) and the
// shape of the built file the server substitutes its configuration into.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { PLACEHOLDER } from '../build.mjs';
import { config, tagSource, withConfig } from './support/harness.ts';

/** The goal (issue 4): the served tag with one integration in 3 KB gzipped. */
export const GOAL = 3072;
/**
 * The ceiling enforced today: the full feature set does not fit the goal
 * (README "Size" lists what each feature costs). Lower it as the tag shrinks;
 * never raise it without saying why.
 */
export const CEILING = 3750;

const servedGzip = async () => {
  const served = withConfig(await tagSource(), config());
  return [served.length, gzipSync(served, { level: 9 }).length];
};

test('the built tag holds the configuration placeholder exactly once', async () => {
  const src = await tagSource();
  assert.equal(src.split(PLACEHOLDER).length, 2);
  assert.doesNotMatch(src, /\n./, 'one minified line');
});

test('the served tag is valid JavaScript with the configuration substituted', async () => {
  const served = withConfig(await tagSource(), config());
  assert.doesNotThrow(() => new Function(served));
});

test(`the served tag with one integration stays under ${CEILING} bytes gzipped`, async (t) => {
  const [raw, gz] = await servedGzip();
  t.diagnostic(`served tag (Gala Partners configured): ${raw} bytes, ${gz} bytes gzipped; goal ${GOAL}, ceiling ${CEILING}`);
  assert.ok(gz <= CEILING, `${gz} bytes gzipped, ceiling ${CEILING}`);
});

test(`the served tag with one integration fits the ${GOAL}-byte goal`, { todo: 'over the goal: see README "Size"' }, async () => {
  const [, gz] = await servedGzip();
  assert.ok(gz <= GOAL, `${gz} bytes gzipped, goal ${GOAL}`);
});
