// The link rules against the shared fixture (tests/fixtures/links.json),
// which crates/domain/src/links.rs runs too, plus the rules' edge cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { byName, glob, linkGroup, replaceToken, resolve, rewrite, setSubid, tagLink, touchable } from '../src/links.ts';
import type { Group } from '../src/types.ts';

interface Case {
  name: string;
  page?: string;
  groups?: Group[];
  href: string;
  data_tracking_group?: string;
  rel?: string;
  group: string | null;
  tagged: boolean;
  expected: string;
}
const fixture: {
  page: string;
  click_id: string;
  groups: Group[];
  cases: Case[];
  globs: { pattern: string; text: string; matches: boolean }[];
} = JSON.parse(readFileSync(new URL('../../tests/fixtures/links.json', import.meta.url), 'utf8'));

const ID = fixture.click_id;

/** What AutoTag does to the case's link: [tagged, group key, href after]. */
const run = (c: Case, href: string): [boolean, string | null, string] => {
  const attrs: Record<string, string | undefined> = { 'data-tracking-group': c.data_tracking_group, rel: c.rel };
  const r = tagLink(c.groups || fixture.groups, c.page || fixture.page, href, { getAttribute: (n) => attrs[n] }, ID);
  return r ? [true, r.group?.key ?? null, r.href] : [false, null, href];
};

test('the fixture keeps its cases', () => {
  assert.ok(fixture.cases.length >= 40);
  assert.equal(new Set(fixture.cases.map((c) => c.name)).size, fixture.cases.length, 'case names are unique');
});

for (const c of fixture.cases) {
  test(`fixture: ${c.name}`, () => {
    const [tagged, group, href] = run(c, c.href);
    assert.deepEqual({ tagged, group, href }, { tagged: c.tagged, group: c.group, href: c.expected });
    // Tagging its own output again changes nothing. (A link tracked only
    // through its token has no token left then: the tag remembers it.)
    const [, againGroup, again] = run(c, href);
    assert.equal(again, href, 'idempotent');
    if (c.group) assert.equal(againGroup, c.group);
  });
}

test('fixture globs', () => {
  for (const g of fixture.globs) assert.equal(glob(g.pattern, g.text), g.matches, `${g.pattern} on ${g.text}`);
});

test('setSubid: forms of the query and untouchable hrefs', () => {
  assert.equal(setSubid('https://x.test/a', 'c', ID), `https://x.test/a?c=${ID}`);
  assert.equal(setSubid('https://x.test/a?', 'c', ID), `https://x.test/a?c=${ID}`);
  assert.equal(setSubid('https://x.test/a?b=1&', 'c', ID), `https://x.test/a?b=1&c=${ID}`);
  assert.equal(setSubid('https://x.test/a?&', 'c', ID), `https://x.test/a?&c=${ID}`);
  assert.equal(setSubid('https://x.test/a?c&c=x', 'c', ID), `https://x.test/a?c=${ID}&c=${ID}`);
  assert.equal(setSubid('https://x.test/a?cc=1', 'c', ID), `https://x.test/a?cc=1&c=${ID}`);
  assert.equal(setSubid('https://x.test/a?sub.id=1', 'sub.id', ID), `https://x.test/a?sub.id=${ID}`);
  assert.equal(setSubid('https://x.test/a?subXid=1', 'sub.id', ID), `https://x.test/a?subXid=1&sub.id=${ID}`);
  assert.equal(setSubid('https://x.test/a', '', ID), undefined);
  assert.equal(setSubid('https://x.test/a', 'c&d', ID), undefined);
  for (const bad of ['', '#top', 'javascript:void(0)', 'mailto:a@b.test', 'tel:+441234', 'data:text/html,x', 'ftp://x.test/', 'https://', 'http://exa mple.com/', 'https://x.test/\na']) {
    assert.equal(setSubid(bad, 'c', ID), undefined, JSON.stringify(bad));
    assert.equal(replaceToken(bad, ID), undefined, JSON.stringify(bad));
  }
});

test('rewrite keeps every byte it does not own', () => {
  const href = 'https://wlx.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&x=%2F%3F&y=a+b&z=é&c=#f?c=1&amp;';
  assert.equal(rewrite(href, fixture.groups[0], ID), `https://wlx.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&x=%2F%3F&y=a+b&z=é&c=${ID}#f?c=1&amp;`);
});

test('setSubid is idempotent on generated hrefs', () => {
  // A small deterministic generator over the characters that matter.
  const parts = ['https://x.test/p', '//x.test', '/rel', 'rel', '?', '&', '&amp;', '#', 'c', 'c=', 'c=v', 'cc=1', '=', 'a=https://y/?q=1', 'd=http:', '%20', 'é', '--CLICK-ID--'];
  let seed = 7;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed);
  for (let n = 0; n < 3000; n++) {
    let href = '';
    for (let k = next() % 7; k >= 0; k--) href += parts[next() % parts.length];
    const once = setSubid(href, 'c', ID);
    if (once !== undefined) assert.equal(setSubid(once, 'c', ID), once, href);
  }
});

test('setSubid with placement path_segment (crates/domain set_path_subid_rules)', () => {
  const seg = (href: string, param = 'pubref') => setSubid(href, param, ID, 'path_segment');
  assert.equal(seg('https://prf.hn/click/camref:1100l3/destination:x'), `https://prf.hn/click/camref:1100l3/pubref:${ID}/destination:x`);
  assert.equal(seg('https://prf.hn/click/camref:1/pubref:old?pubref=q#pubref:f'), `https://prf.hn/click/camref:1/pubref:${ID}?pubref=q#pubref:f`);
  assert.equal(seg('https://x.test/go/a#top'), `https://x.test/go/a?pubref=${ID}#top`, 'no camref: the query');
  assert.equal(seg('camref:1/x'), undefined, 'a scheme, not http(s)');
  assert.equal(seg('click/camref:1'), `click/camref:1/pubref:${ID}`);
  assert.equal(seg('https://prf.hn/click/camref:1', 'pub/ref'), undefined);
  assert.equal(seg('https://prf.hn/click/camref:1', ''), undefined);
  assert.equal(seg('javascript:void(0)'), undefined);
  assert.equal(setSubid('https://prf.hn/click/camref:1', 'pubref', ID, 'query'), `https://prf.hn/click/camref:1?pubref=${ID}`);
  const partnerize = byName(fixture.groups, 'phg')!;
  assert.equal(rewrite('https://prf.hn/click/camref:1/pubref:--click-id--', partnerize, ID), `https://prf.hn/click/camref:1/pubref:${ID}`);
});

test('path segments: idempotent on generated hrefs', () => {
  const parts = ['/camref:', '/pubref:', '/PUBREF:', '/destination:', '/x', 'a1', ':', '?', '&', '=', '#', '/'];
  let seed = 11;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed);
  for (let n = 0; n < 3000; n++) {
    let href = 'https://prf.hn';
    for (let k = next() % 8; k >= 0; k--) href += parts[next() % parts.length];
    const once = setSubid(href, 'pubref', ID, 'path_segment');
    assert.ok(once?.includes('/pubref:' + ID) || once?.includes('pubref=' + ID), href);
    assert.equal(setSubid(once!, 'pubref', ID, 'path_segment'), once, href);
  }
});

test('resolve and touchable follow the browser', () => {
  assert.equal(touchable('  https://x.test/a \n'), 'https://x.test/a');
  assert.equal(resolve('/go/x', 'https://site.test/blog/')?.[1].href, 'https://site.test/go/x');
  assert.equal(resolve('go/x', 'https://site.test/blog/post')?.[1].href, 'https://site.test/blog/go/x');
  assert.equal(resolve('//cdn.test/x', 'http://site.test/')?.[1].href, 'http://cdn.test/x');
  assert.equal(resolve('mailto:a@b.test', 'https://site.test/'), undefined);
  assert.equal(resolve('x', 'about:blank'), undefined);
});

test('groups by name and by AutoScan answer', () => {
  assert.equal(byName(fixture.groups, ' GalaPartners ')?.key, 'incomeaccess');
  assert.equal(byName(fixture.groups, ''), undefined);
  const attrs = { getAttribute: (_: string) => null };
  const scanned = linkGroup(fixture.groups, 'https://site.test/', '/go/pinnacle', attrs, () => fixture.groups[0]);
  assert.deepEqual(scanned, ['/go/pinnacle', fixture.groups[0]]);
  assert.equal(linkGroup(fixture.groups, 'https://site.test/', '/go/pinnacle', attrs, () => undefined), undefined);
});
