import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalityLeastConnectionReplicationScheduler } from '../../src/scheduling/lblcr.js';
import { D, FakeClock, HOUR, MIN, SEC, ctx, dests, nameOf } from './fixtures.js';

const V1 = '198.18.10.1';

function go(s: LocalityLeastConnectionReplicationScheduler, l: readonly D[], n: number, open = true): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = s.schedule(l, ctx({ vip: V1 }));
    const x = l.find((y) => y.key === d?.key);
    if (open && x) x.activeConns++;
    out.push(nameOf(l, d));
  }
  return out;
}

const setOf = (s: LocalityLeastConnectionReplicationScheduler, all: readonly D[]): string[] =>
  (s.cache()[0]?.set ?? []).map((k) => all.find((d) => d.key === k)?.name ?? k);

test('lblcr grows a server set per address, uses its least-loaded member, and shrinks it after the expiration', () => {
  const clock = new FakeClock();
  const s = new LocalityLeastConnectionReplicationScheduler({ now: clock.now });
  const [a, b] = dests(1, 1);
  assert.ok(a && b);
  let l: D[] = [a, b];
  s.update(l);
  // 1 miss -> wlc A; set {A}. 2 A (1 active, not > weight). 3 A has 2 > 1 and B has 0*2 < 1:
  // overloaded -> wlc picks B, added at the head: {B, A}. 4 set_min: B(256) vs A(512) -> B.
  // 5 B(512) ties A(512) -> B (first); B has 2 > 1 but no server has activeconns*2 < weight.
  assert.deepEqual(go(s, l, 5), ['A', 'A', 'B', 'B', 'B']);
  assert.deepEqual(setOf(s, l), ['B', 'A']);
  // At 10 s add C (weight 2) at the head. set_min: B(768) > A(512) -> A, overloaded since C has
  // 0*2 < 2 -> wlc over C, A, B -> C, added: {C, B, A}. Then C (256/2) is the set's least.
  clock.t = 10 * SEC;
  const c = new D('C', 2, '198.18.0.3');
  l = [c, a, b];
  s.update(l);
  assert.deepEqual(go(s, l, 2), ['C', 'C']);
  assert.deepEqual(setOf(s, l), ['C', 'B', 'A']);
  assert.equal(s.cache()[0]?.lastmod, 10 * SEC);
  // Just after lastmod + 24 h (the entry, last used at 10 s, survives until the full check at
  // 88200 s; full checks run every 30 min): set_min -> C (512/2); then the set shrinks by its weighted-most-loaded member:
  // C 512/2 < B 768/1 -> B; B 768 vs A 512 -> B stays most. B is erased: {C, A}.
  clock.t = 10 * SEC + 24 * HOUR + 1;
  assert.deepEqual(go(s, l, 1), ['C']);
  assert.deepEqual(setOf(s, l), ['C', 'A']);
  // lastmod was just updated: no further shrinking. C(768/2) vs A(512/1): C stays least; C has
  // 3 > 2 but no server has activeconns*2 < weight, so it is used.
  assert.deepEqual(go(s, l, 1), ['C']);
  assert.deepEqual(setOf(s, l), ['C', 'A']);
});

test('lblcr: removed members are never chosen but are still weighed by set_max (kernel behaviour)', () => {
  const clock = new FakeClock();
  const s = new LocalityLeastConnectionReplicationScheduler({ now: clock.now });
  const [a, b] = dests(1, 1);
  assert.ok(a && b);
  s.update([a, b]);
  clock.t = 1 * SEC;
  assert.deepEqual(go(s, [a, b], 3), ['A', 'A', 'B']); // set {B, A}, B has 1 active
  s.update([a]); // B leaves the service (the kernel keeps it in the trash, in the set)
  // set_min skips the unavailable B -> A (3 active > 1, but no server is under half its weight).
  assert.deepEqual(go(s, [a], 1), ['A']);
  // Just after lastmod (1 s) + 24 h (the entry lives until the 88200 s full check), set_max
  // weighs B as last seen (256/1) against A (768/1): A is the most loaded and is erased, leaving
  // only the departed B; A, already chosen by set_min, is still returned this time.
  clock.t = 1 * SEC + 24 * HOUR + 1;
  assert.deepEqual(go(s, [a], 1), ['A']);
  assert.deepEqual(setOf(s, [a, b]), ['B']);
  // Now set_min finds nothing available -> wlc -> A, inserted again at the head.
  assert.deepEqual(go(s, [a], 1), ['A']);
  assert.deepEqual(setOf(s, [a, b]), ['A', 'B']);
});

test('lblcr: entries are collected by the full check after sysctl lblcr_expiration', () => {
  const clock = new FakeClock();
  const s = new LocalityLeastConnectionReplicationScheduler({ now: clock.now, expirationMs: 10 * MIN });
  const l = dests(1, 1);
  s.update(l);
  assert.deepEqual(go(s, l, 1, false), ['A']);
  clock.t = 30 * MIN - 1;
  s.expire();
  assert.equal(s.cache().length, 1);
  clock.t = 30 * MIN;
  s.expire();
  assert.equal(s.cache().length, 0);
});

test('lblcr: nothing available -> undefined, and no entry is made', () => {
  const clock = new FakeClock();
  const s = new LocalityLeastConnectionReplicationScheduler({ now: clock.now });
  const l = dests(0, 1);
  const b = l[1];
  assert.ok(b);
  b.overloaded = true;
  s.update(l);
  assert.deepEqual(go(s, l, 1), ['-']);
  assert.equal(s.cache().length, 0);
});
