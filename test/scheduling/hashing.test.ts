import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addrFold, hash32 } from '../../src/scheduling/common.js';
import { DestinationHashingScheduler, IP_VS_DH_TAB_SIZE, dhHashKey } from '../../src/scheduling/dh.js';
import { IP_VS_SH_TAB_SIZE, SourceHashingScheduler, shHashKey } from '../../src/scheduling/sh.js';
import { ctx, dests, nameOf } from './fixtures.js';
import type { D } from './fixtures.js';
import type { Scheduler } from '../../src/scheduling/scheduler.js';

// Bucket numbers below are hash_32(ntohl(addr), 8) = (addr * 0x61C88647 mod 2^32) >> 24; they
// were cross-checked against a C transcription of include/linux/hash.h and ip_vs_{dh,sh}.c.
const BUCKET: Readonly<Record<string, number>> = {
  '198.51.100.1': 96, '198.51.100.2': 194, '198.51.100.3': 35, '198.51.100.4': 133,
  '198.51.100.5': 231, '198.51.100.6': 73, '203.0.113.9': 64,
  '198.18.10.1': 146, '198.18.10.2': 243, '198.18.10.3': 85, '198.18.10.4': 183, '198.18.10.5': 25, '198.18.10.6': 122,
};

test('hash32 is the kernel hash_32 with GOLDEN_RATIO_32', () => {
  assert.equal(hash32(1, 32), 0x61c88647);
  assert.equal(hash32(0xc6120001, 8), 188); // 198.18.0.1
  assert.equal(hash32(0, 8), 0);
  for (const [ip, b] of Object.entries(BUCKET)) {
    assert.equal(shHashKey(ip), b, ip);
    assert.equal(dhHashKey(ip), b, ip);
  }
});

test('IPv6 addresses are folded as a[0]^a[1]^a[2]^a[3] (network words)', () => {
  // 2001:db8::1 -> 0x20010db8 ^ 0 ^ 0 ^ 0x00000001 = 0x20010db9 = 32.1.13.185
  assert.equal(addrFold('2001:db8::1'), 0x20010db9);
  assert.equal(shHashKey('2001:db8::1'), shHashKey('32.1.13.185'));
  assert.equal(dhHashKey('fd00:1:2:3:4:5:6:7'), dhHashKey('253.0.0.0')); // fd000001^00020003^00040005^00060007 = fd000000
});

const pickBy = (s: Scheduler, l: readonly D[], field: 'clientIP' | 'vip', ips: readonly string[]): string[] =>
  ips.map((ip) => nameOf(l, s.schedule(l, ctx({ [field]: ip }))));

test('dh fills 256 buckets round-robin over the list, weights ignored', () => {
  const s = new DestinationHashingScheduler();
  const l = dests(1, 5, 1);
  s.update(l);
  const t = s.table(l);
  assert.equal(t.length, IP_VS_DH_TAB_SIZE);
  t.forEach((k, i) => assert.equal(k, l[i % 3]?.key, `bucket ${i}`));
});

test('dh picks by the virtual address: bucket % 3 over A, B, C', () => {
  const s = new DestinationHashingScheduler();
  const l = dests(1, 1, 1);
  s.update(l);
  const vips = ['198.18.10.1', '198.18.10.2', '198.18.10.3', '198.18.10.4', '198.18.10.5', '198.18.10.6'];
  // buckets 146 243 85 183 25 122 -> mod 3: 2 0 1 0 1 2
  assert.deepEqual(pickBy(s, l, 'vip', vips), ['C', 'A', 'B', 'A', 'B', 'C']);
  // The client does not matter.
  assert.equal(nameOf(l, s.schedule(l, ctx({ vip: '198.18.10.1', clientIP: '203.0.113.77' }))), 'C');
  // Overloaded or weight 0: no fallback, the connection is refused; other buckets unaffected.
  const b = l[1];
  assert.ok(b);
  b.overloaded = true;
  assert.deepEqual(pickBy(s, l, 'vip', vips), ['C', 'A', '-', 'A', '-', 'C']);
  b.overloaded = false;
  b.weight = 0;
  assert.deepEqual(pickBy(s, l, 'vip', vips), ['C', 'A', '-', 'A', '-', 'C']);
  // Deleting B rebuilds the table over A, C: mod 2 of 146 243 85 183 25 122 = 0 1 1 1 1 0.
  const next = l.filter((d) => d.name !== 'B');
  s.update(next);
  assert.deepEqual(pickBy(s, next, 'vip', vips), ['A', 'C', 'C', 'C', 'C', 'A']);
  s.update([]);
  assert.deepEqual(pickBy(s, [], 'vip', vips.slice(0, 1)), ['-']);
});

test('sh gives each destination `weight` consecutive buckets (one for weight 0)', () => {
  const s = new SourceHashingScheduler();
  const l = dests(1, 2, 1);
  s.update(l);
  const t = s.table(l);
  assert.equal(t.length, IP_VS_SH_TAB_SIZE);
  // Pattern A B B C repeated: bucket % 4 -> A, B, B, C.
  t.forEach((k, i) => assert.equal(k, l[[0, 1, 1, 2][i % 4] ?? 0]?.key, `bucket ${i}`));
  const count = (key: string | undefined): number => t.filter((x) => x === key).length;
  assert.deepEqual(l.map((d) => count(d.key)), [64, 128, 64]);
  const z = new SourceHashingScheduler();
  const lz = dests(1, 0, 1);
  z.update(lz);
  // Weight 0 still takes one bucket (the test is ++count >= weight): A B C repeated, 256 = 3*85+1.
  assert.deepEqual(lz.map((d) => z.table(lz).filter((x) => x === d.key).length), [86, 85, 85]);
});

test('sh picks by client address, without fallback', () => {
  const s = new SourceHashingScheduler();
  const l = dests(1, 2, 1);
  s.update(l);
  const clients = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4', '198.51.100.5', '198.51.100.6', '203.0.113.9'];
  // buckets 96 194 35 133 231 73 64 -> mod 4: 0 2 3 1 3 1 0 -> A B C B C B A
  assert.deepEqual(pickBy(s, l, 'clientIP', clients), ['A', 'B', 'C', 'B', 'C', 'B', 'A']);
  // The virtual address and client port do not matter (no sh-port flag).
  assert.equal(nameOf(l, s.schedule(l, ctx({ clientIP: '198.51.100.1', clientPort: 1, vip: '198.18.99.9' }))), 'A');
  // C overloaded: its clients are refused (IP_VS_SVC_F_SCHED_SH_FALLBACK is off by default).
  const c = l[2];
  assert.ok(c);
  c.overloaded = true;
  assert.deepEqual(pickBy(s, l, 'clientIP', clients), ['A', 'B', '-', 'B', '-', 'B', 'A']);
  c.overloaded = false;
  // B quiesced (weight 0, an upd_dest): the table is rebuilt as A B C repeated (B keeps one
  // bucket per round); mod 3 of the buckets: 0 2 2 1 0 1 1 -> A C C B(refused) A B(refused) B(refused)
  const b = l[1];
  assert.ok(b);
  b.weight = 0;
  s.update(l);
  assert.deepEqual(pickBy(s, l, 'clientIP', clients), ['A', 'C', 'C', '-', 'A', '-', '-']);
});
