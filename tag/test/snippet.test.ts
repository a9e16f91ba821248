// The install snippet: queue, async loader, never throwing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const snippet = readFileSync(new URL('../snippet.html', import.meta.url), 'utf8');
const script = snippet.replace(/^\s*<script>|<\/script>\s*$/g, '');

test('the snippet has exactly one placeholder and is one small script element', () => {
  assert.equal(snippet.split('{{TAG_URL}}').length, 2);
  assert.equal(snippet.match(/<script/g)?.length, 1);
  assert.ok(snippet.length < 400, `${snippet.length} bytes`);
});

test('at the top of <head>: queues commands and inserts the async tag script', () => {
  const html = `<!doctype html><html><head>${snippet.replace('{{TAG_URL}}', 'https://track.example.net/t/k3j5q8x2m9w4.js')}<script>clicktrail('track', 'Lead', {value: 1}); clicktrail('consent', true);</script></head><body></body></html>`;
  const dom = new JSDOM(html, { runScripts: 'dangerously' });
  const w = dom.window as any;
  const s = w.document.querySelector('script[src]');
  assert.equal(s.src, 'https://track.example.net/t/k3j5q8x2m9w4.js');
  assert.equal(s.async, true);
  assert.equal(w.clicktrail.q.length, 2);
  assert.deepEqual(JSON.parse(JSON.stringify([...w.clicktrail.q[0]])), ['track', 'Lead', { value: 1 }]);
});

test('does not replace an existing clicktrail and never throws', () => {
  const dom = new JSDOM('<!doctype html><html><head></head></html>', { runScripts: 'outside-only' });
  const w = dom.window as any;
  const existing = () => {};
  w.clicktrail = existing;
  w.eval(script);
  assert.equal(w.clicktrail, existing);
  // Even with createElement broken the page goes on.
  w.document.createElement = () => {
    throw new Error('no');
  };
  delete w.clicktrail;
  assert.doesNotThrow(() => w.eval(script));
});
