// Ids: the click-id scheme shared with crates/domain/src/clickid.rs, UUIDv7,
// base64url, SHA-256.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { b64, clickId, hex, rnd, sha256, uuid7, uuidText } from '../src/ids.ts';

const uuidBytes = (s: string) => Uint8Array.from(s.replace(/-/g, '').match(/../g)!, (h) => parseInt(h, 16));

test('click id known vector (crates/domain/src/clickid.rs known_vector)', () => {
  const pv = uuidBytes('0190f1a2-7d3c-7abc-8def-0123456789ab');
  const id = clickId(pv);
  assert.equal(id.length, 28);
  assert.equal(id.slice(0, 22), 'AZDxon08eryN7wEjRWeJqw');
  assert.match(id, /^[A-Za-z0-9_-]{28}$/);
  assert.equal(uuidText(pv), '0190f1a2-7d3c-7abc-8def-0123456789ab');
});

test('click ids differ per link, share the pageview prefix', () => {
  const pv = uuid7();
  const ids = new Set(Array.from({ length: 2000 }, () => clickId(pv)));
  assert.equal(ids.size, 2000);
  for (const id of ids) {
    assert.match(id, /^[A-Za-z0-9_-]{28}$/);
    assert.equal(id.slice(0, 22), b64(pv).slice(0, 22));
  }
});

test('uuid7: version, variant, time', () => {
  const before = Date.now();
  const a = uuid7();
  const text = uuidText(a);
  assert.match(text, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const ms = parseInt(text.replace(/-/g, '').slice(0, 12), 16);
  assert.ok(ms >= before && ms <= Date.now(), `${ms}`);
  assert.notEqual(uuidText(uuid7()), text);
});

test('ids of the tag are valid wire ids', () => {
  // visitor_id: 8-64 of [A-Za-z0-9_.-]; session_hint up to 64.
  for (let i = 0; i < 500; i++) {
    assert.match(b64(rnd(15)), /^[A-Za-z0-9_-]{20}$/);
    assert.match(b64(rnd(12)), /^[A-Za-z0-9_-]{16}$/);
  }
});

test('sha256 and hex', async () => {
  assert.equal(await sha256('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(hex(Uint8Array.of(0, 15, 255)), '000fff');
});
