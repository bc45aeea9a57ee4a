import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MaglevHashingScheduler, MH_HASH1, mhHashKey } from '../../src/scheduling/mh.js';
import { D, ctx, nameOf } from './fixtures.js';

// Expected tables and choices were cross-checked against a C transcription of ip_vs_mh.c
// (ip_vs_mh_permutate/ip_vs_mh_populate) with lib/siphash.c's 64-bit hsiphash.

const three = (w1 = 1, w2 = 1, w3 = 1): D[] => [
  new D('A', w1, '198.18.1.1', 8080),
  new D('B', w2, '198.18.1.2', 8080),
  new D('C', w3, '198.18.1.3', 8080),
];
const CLIENTS = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4', '198.51.100.5', '198.51.100.6', '203.0.113.9'];
const picks = (s: MaglevHashingScheduler, l: readonly D[]): string[] => CLIENTS.map((c) => nameOf(l, s.schedule(l, ctx({ clientIP: c }))));
const counts = (s: MaglevHashingScheduler, l: readonly D[]): number[] => l.map((d) => s.table().filter((k) => k === d.key).length);

test('mh: default table is 4093 slots, all filled, near-equal shares', () => {
  const l = three();
  const s = new MaglevHashingScheduler();
  s.update(l);
  assert.equal(s.tableSize, 4093);
  assert.equal(s.table().filter((k) => k === undefined).length, 0);
  assert.deepEqual(counts(s, l), [1365, 1364, 1364]);
  // First slots, as the kernel fills them.
  assert.deepEqual(s.table().slice(0, 12).map((k) => l.find((d) => d.key === k)?.name), ['C', 'A', 'A', 'B', 'B', 'A', 'B', 'A', 'A', 'B', 'A', 'C']);
});

test('mh: the same inputs always give the same table and choices', () => {
  const a = new MaglevHashingScheduler();
  const b = new MaglevHashingScheduler();
  a.update(three());
  b.update(three());
  assert.deepEqual(a.table(), b.table());
  // Client slots: hsiphash(ntohl(saddr)) % 4093 with key hash1 and port 0.
  assert.equal(mhHashKey('198.51.100.1', 0, MH_HASH1) % 4093, 2374);
  assert.deepEqual(picks(a, three()), ['A', 'C', 'C', 'C', 'B', 'A', 'C']);
});

test('mh: weights share the table in proportion (turns = weight / gcd)', () => {
  const l = three(1, 2, 3);
  const s = new MaglevHashingScheduler();
  s.update(l);
  assert.deepEqual(counts(s, l), [683, 1364, 2046]);
  assert.deepEqual(picks(s, l), ['C', 'C', 'C', 'C', 'C', 'A', 'C']);
});

test('mh: a smaller table (CONFIG_IP_VS_MH_TAB_INDEX=8, 251 slots)', () => {
  const l = three();
  const s = new MaglevHashingScheduler({ tabIndex: 8 });
  s.update(l);
  assert.equal(s.tableSize, 251);
  assert.deepEqual(counts(s, l), [84, 84, 83]);
  assert.deepEqual(picks(s, l).slice(0, 3), ['A', 'C', 'B']);
  assert.throws(() => new MaglevHashingScheduler({ tabIndex: 18 }), RangeError);
});

test('mh: removing one destination moves only its own slots (and a few more)', () => {
  const l = three();
  const s = new MaglevHashingScheduler();
  s.update(l);
  const before = s.table().slice();
  const next = l.filter((d) => d.name !== 'B');
  s.update(next);
  const after = s.table();
  assert.deepEqual(counts(s, next), [2047, 2046]);
  // Clients of A and C stay put; B's clients (198.51.100.5) move.
  assert.deepEqual(picks(s, next), ['A', 'C', 'C', 'C', 'C', 'A', 'C']);
  let movedOthers = 0;
  before.forEach((k, i) => {
    if (k !== l[1]?.key && after[i] !== k) movedOthers++;
  });
  // Maglev promises minimal disruption: with N=3, B held ~1/3; only a few % of the others move.
  assert.ok(movedOthers <= 0.05 * 4093, `moved ${movedOthers}`);

  // A larger pool: 10 destinations, remove one.
  const ten = Array.from({ length: 10 }, (_, i) => new D(`D${i}`, 1, `198.18.2.${i + 1}`, 8080));
  const t = new MaglevHashingScheduler();
  t.update(ten);
  const b10 = t.table().slice();
  const removed = ten[4];
  assert.ok(removed);
  t.update(ten.filter((d) => d !== removed));
  const a10 = t.table();
  let changed = 0;
  let ownedByRemoved = 0;
  b10.forEach((k, i) => {
    if (k === removed.key) ownedByRemoved++;
    if (a10[i] !== k) changed++;
  });
  assert.ok(ownedByRemoved >= 400 && ownedByRemoved <= 420, `owned ${ownedByRemoved}`);
  // Every slot of the removed one changes; in all at most ~1.5/N of the table does.
  assert.ok(changed >= ownedByRemoved && changed <= Math.ceil((1.5 * 4093) / 10), `changed ${changed}`);
});

test('mh: quiescing (weight 0) keeps the slots, refusing those clients; weight-0 adds get none', () => {
  const l = three();
  const s = new MaglevHashingScheduler();
  s.update(l);
  const before = s.table().slice();
  const b = l[1];
  assert.ok(b);
  b.weight = 0; // last_weight stays 1: the table does not change
  s.update(l);
  assert.deepEqual(s.table(), before);
  assert.deepEqual(picks(s, l), ['A', 'C', 'C', 'C', '-', 'A', 'C']);
  b.weight = 1;
  b.overloaded = true; // overloaded: refused too (no mh-fallback flag)
  assert.deepEqual(picks(s, l), ['A', 'C', 'C', 'C', '-', 'A', 'C']);
  b.overloaded = false;
  // A destination added with weight 0 has last_weight 0: no turns, no slots.
  const x = new D('X', 0, '198.18.1.9', 8080);
  s.update([x, ...l]);
  assert.equal(s.table().filter((k) => k === x.key).length, 0);
  assert.deepEqual(s.table(), before);
  // All last_weights 0: the table is emptied.
  const z = new MaglevHashingScheduler();
  z.update([x]);
  assert.equal(z.table().filter((k) => k !== undefined).length, 0);
  assert.equal(z.schedule([x], ctx()), undefined);
});
