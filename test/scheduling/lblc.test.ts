import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalityLeastConnectionScheduler } from '../../src/scheduling/lblc.js';
import { LOCALITY_MAX_SIZE } from '../../src/scheduling/locality.js';
import { D, FakeClock, HOUR, MIN, SEC, ctx, dests, nameOf } from './fixtures.js';

const V1 = '198.18.10.1';
const V2 = '198.18.10.2';
const V3 = '198.18.10.3';

function mk(clock: FakeClock, expirationMs?: number): LocalityLeastConnectionScheduler {
  return new LocalityLeastConnectionScheduler(expirationMs === undefined ? { now: clock.now } : { now: clock.now, expirationMs });
}

/** Schedules to each vip in turn; each choice opens an active connection when `open`. */
function go(s: LocalityLeastConnectionScheduler, l: readonly D[], vips: readonly string[], open = true): string[] {
  return vips.map((vip) => {
    const d = s.schedule(l, ctx({ vip }));
    const x = l.find((y) => y.key === d?.key);
    if (open && x) x.activeConns++;
    return nameOf(l, d);
  });
}

const cachedVips = (s: LocalityLeastConnectionScheduler): string[] =>
  s.cache().map((e) => e.addr).sort();
const id = (ip: string): string => `4:${ip.split('.').reduce((a, b) => a * 256 + Number(b), 0)}`;

test('lblc keeps each virtual address on its server until lblc-overloaded, then moves it to the wlc choice', () => {
  const clock = new FakeClock();
  const s = mk(clock);
  const [a, b] = dests(1, 1);
  assert.ok(a && b);
  let l: D[] = [a, b];
  s.update(l);
  // V1 miss: wlc tie -> A. V2 miss: A=256 vs B=0 -> B. V1 hit twice: A has 1 then 2 active
  // connections (> weight 1) but no server has activeconns*2 < weight, so A is not overloaded.
  assert.deepEqual(go(s, l, [V1, V2, V1, V1]), ['A', 'B', 'A', 'A']);
  // Add C (weight 4, linked at the head). Now C has 0*2 < 4, so A (3 > 1) is overloaded:
  // V1 is rescheduled by wlc -> C and its entry replaced.
  const c = new D('C', 4, '198.18.0.3');
  l = [c, a, b];
  s.update(l);
  assert.deepEqual(go(s, l, [V1, V1, V2]), ['C', 'C', 'B']);
  assert.deepEqual(s.cache().map((e) => [e.addr, e.dest]).sort(), [[id(V1), c.key], [id(V2), b.key]]);
  // Kernel quirk: ip_vs_lblc_new replaced V1's entry without decrementing tbl->entries.
  assert.equal(s.entryCounter, 3);
  // C leaves the service: V1's entry now points at an unavailable server -> wlc over A(768), B(512) -> B.
  l = [a, b];
  s.update(l);
  assert.deepEqual(go(s, l, [V1]), ['B']);
  assert.equal(s.entryCounter, 4);
});

test('lblc: a server removed and re-added with the same address is valid again for its entries', () => {
  const clock = new FakeClock();
  const s = mk(clock);
  const [a, b] = dests(1, 1);
  assert.ok(a && b);
  s.update([a, b]);
  assert.deepEqual(go(s, [a, b], [V1], false), ['A']);
  s.update([b]); // A deleted (kept in the kernel's trash, held by the entry)
  s.update([a, b]); // re-added: the kernel revives the same dest
  assert.deepEqual(go(s, [a, b], [V1], false), ['A']);
  s.update([b]);
  assert.deepEqual(go(s, [b], [V1], false), ['B']); // now it is rescheduled
});

test('lblc: the cache path ignores the OVERLOAD flag but not weight 0; the wlc path skips both', () => {
  const clock = new FakeClock();
  const s = mk(clock);
  const [a, b] = dests(1, 1);
  assert.ok(a && b);
  const l = [a, b];
  s.update(l);
  assert.deepEqual(go(s, l, [V1], false), ['A']);
  a.overloaded = true;
  assert.deepEqual(go(s, l, [V1, V2], false), ['A', 'B']);
  a.overloaded = false;
  a.weight = 0;
  assert.deepEqual(go(s, l, [V1], false), ['B']);
});

test('lblc: entries expire only when the periodic full check runs (every 30 minutes)', () => {
  // Timer firings at 60 s, 120 s, ...; with the table within max_size the counter reaches 30 on
  // every 30th firing, which runs the full expiration check: at 1800*m seconds. An entry is
  // dropped by the first full check at or after lastuse + 24 h.
  const clock = new FakeClock();
  const s = mk(clock);
  const [a, b] = dests(1, 1);
  assert.ok(a && b);
  const l = [a, b];
  s.update(l);
  clock.t = 1 * SEC;
  assert.deepEqual(go(s, l, [V1, V3], false), ['A', 'A']);
  clock.t = 1 * HOUR;
  assert.deepEqual(go(s, l, [V3], false), ['A']); // refreshes V3's lastuse to 3600 s
  // V1 (last used at 1 s) is older than 24 h from 86401 s, but the next full check is at 88200 s.
  clock.t = 88200 * SEC - 1;
  s.expire();
  assert.deepEqual(cachedVips(s), [id(V1), id(V3)].sort());
  clock.t = 88200 * SEC;
  s.expire();
  assert.deepEqual(cachedVips(s), [id(V3)]);
  // V3 (last used at 3600 s) goes at the full check at exactly 3600 + 86400 = 90000 s.
  clock.t = 90000 * SEC - 1;
  s.expire();
  assert.deepEqual(cachedVips(s), [id(V3)]);
  clock.t = 90000 * SEC;
  s.expire();
  assert.deepEqual(cachedVips(s), []);
  // V1 is a miss now: wlc with A busier than B -> B.
  a.activeConns = 5;
  assert.deepEqual(go(s, l, [V1], false), ['B']);
});

test('lblc: a stale entry is still used (and refreshed) before the collection pass', () => {
  const clock = new FakeClock();
  const s = mk(clock);
  const [a, b] = dests(1, 1);
  assert.ok(a && b);
  const l = [a, b];
  s.update(l);
  clock.t = 1 * SEC;
  assert.deepEqual(go(s, l, [V1], false), ['A']);
  a.activeConns = 1; // wlc would now pick B
  clock.t = 87000 * SEC; // idle for more than 24 h, but no full check since 86400 s
  assert.deepEqual(go(s, l, [V1], false), ['A']);
  clock.t = 88200 * SEC; // the full check: lastuse is 87000 s, not expired
  assert.deepEqual(go(s, l, [V1], false), ['A']);
});

test('lblc: sysctl lblc_expiration (10 min) is applied by the first full check, at 30 min', () => {
  const clock = new FakeClock();
  const s = mk(clock, 10 * MIN);
  const l = dests(1, 1);
  s.update(l);
  go(s, l, [V1], false);
  clock.t = 30 * MIN - 1;
  s.expire();
  assert.equal(s.cache().length, 1);
  clock.t = 30 * MIN;
  s.expire();
  assert.equal(s.cache().length, 0);
});

test('lblc: over max_size no new entries are made; the over-size collection drops entries idle 6 min', () => {
  const clock = new FakeClock();
  const s = mk(clock);
  const l = dests(1, 1);
  s.update(l);
  const vip = (i: number): string => `198.18.${i >> 8}.${i & 255}`;
  for (let i = 0; i <= LOCALITY_MAX_SIZE; i++) s.schedule(l, ctx({ vip: vip(i) }));
  assert.equal(s.entryCounter, LOCALITY_MAX_SIZE + 1);
  // entries (16385) > max_size (16384): the next address is served but not cached.
  assert.equal(nameOf(l, s.schedule(l, ctx({ vip: vip(LOCALITY_MAX_SIZE + 1) }))), 'A');
  assert.equal(s.entryCounter, LOCALITY_MAX_SIZE + 1);
  // Firings at 60..300 s find nothing idle for 6 min (ENTRY_TIMEOUT).
  clock.t = 5 * MIN;
  s.expire();
  assert.equal(s.entryCounter, LOCALITY_MAX_SIZE + 1);
  // At 360 s: goal = (16385 - 16384) * 4 / 3 = 1, so the first non-empty bucket after the rover
  // is emptied and the pass stops.
  clock.t = 6 * MIN;
  s.expire();
  assert.ok(s.entryCounter <= LOCALITY_MAX_SIZE && s.entryCounter >= LOCALITY_MAX_SIZE - 64, `entries ${s.entryCounter}`);
  assert.equal(s.cache().length, s.entryCounter);
});
