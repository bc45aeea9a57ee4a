import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LeastConnectionScheduler } from '../../src/scheduling/lc.js';
import { NeverQueueScheduler } from '../../src/scheduling/nq.js';
import { ShortestExpectedDelayScheduler } from '../../src/scheduling/sed.js';
import { WeightedLeastConnectionScheduler } from '../../src/scheduling/wlc.js';
import type { Scheduler } from '../../src/scheduling/scheduler.js';
import { ctx, dests, nameOf, run } from './fixtures.js';

/** [weight, activeconns, inactconns, overloaded?] per destination A, B, C... */
type Row = readonly [number, number, number, boolean?];

interface Case {
  readonly name: string;
  readonly rows: readonly Row[];
  readonly want: string;
}

function one(s: Scheduler, rows: readonly Row[]): string {
  const l = dests(...rows.map((r) => r[0]));
  rows.forEach(([, act, inact, over], i) => {
    const d = l[i];
    if (!d) return;
    d.activeConns = act;
    d.inactiveConns = inact;
    d.overloaded = over ?? false;
  });
  s.update(l);
  return nameOf(l, s.schedule(l, ctx()));
}

function table(label: string, make: () => Scheduler, cases: readonly Case[]): void {
  for (const c of cases) {
    test(`${label}: ${c.name}`, () => assert.equal(one(make(), c.rows), c.want));
  }
}

// lc: least (activeconns << 8) + inactconns, weights ignored except 0; first wins ties.
table('lc', () => new LeastConnectionScheduler(), [
  { name: 'overhead is active*256 + inactive', rows: [[1, 1, 0], [1, 0, 300], [1, 0, 10]], want: 'C' },
  { name: '255 inactive weigh less than 1 active', rows: [[1, 1, 0], [1, 0, 255]], want: 'B' },
  { name: 'ties go to the first in the list', rows: [[1, 0, 5], [1, 0, 5]], want: 'A' },
  { name: 'weight 0 is skipped', rows: [[0, 0, 0], [1, 3, 0]], want: 'B' },
  { name: 'overloaded is skipped', rows: [[1, 0, 0, true], [1, 3, 0]], want: 'B' },
  { name: 'weights do not scale the count', rows: [[1, 0, 10], [100, 0, 11]], want: 'A' },
  { name: 'nothing available', rows: [[0, 0, 0], [1, 0, 0, true]], want: '-' },
]);

// wlc: least overhead/weight compared as loh*dw > doh*lw; first wins ties.
table('wlc', () => new WeightedLeastConnectionScheduler(), [
  { name: 'same load, higher weight wins', rows: [[1, 1, 0], [2, 1, 0]], want: 'B' }, // 256*2 > 256*1
  { name: 'load per weight', rows: [[3, 2, 0], [2, 1, 0]], want: 'B' }, // 512*2 > 256*3
  { name: 'exact tie keeps the first', rows: [[2, 2, 0], [1, 1, 0]], want: 'A' }, // 512*1 > 256*2 is false
  { name: 'idle servers tie at 0: the first wins whatever the weights', rows: [[1, 0, 0], [5, 0, 0]], want: 'A' },
  { name: 'inactive connections count 1/256', rows: [[1, 0, 300], [1, 1, 0]], want: 'B' },
  { name: 'a leading weight-0 destination is skipped', rows: [[0, 0, 0], [1, 5, 0]], want: 'B' },
  { name: 'a later weight-0 destination never wins', rows: [[1, 1, 0], [0, 0, 0]], want: 'A' },
  { name: 'overloaded is skipped', rows: [[1, 0, 0, true], [1, 9, 0]], want: 'B' },
  { name: 'nothing available', rows: [[0, 0, 0], [1, 0, 0, true]], want: '-' },
]);

// sed: least (activeconns + 1)/weight; inactive connections ignored.
table('sed', () => new ShortestExpectedDelayScheduler(), [
  { name: 'idle servers: the heavier one wins (1*2 > 1*1)', rows: [[1, 0, 0], [2, 0, 0]], want: 'B' },
  { name: 'inactive connections are ignored', rows: [[1, 0, 1000], [1, 1, 0]], want: 'A' },
  { name: 'tie keeps the first', rows: [[1, 1, 0], [2, 3, 0]], want: 'A' }, // 2*2 > 4*1 is false
  { name: 'a later weight-0 destination never wins', rows: [[1, 5, 0], [0, 0, 0]], want: 'A' }, // 6*0 > 1*1 is false
  { name: 'overloaded is skipped', rows: [[1, 0, 0, true], [1, 7, 0]], want: 'B' },
]);

// nq: an idle server (activeconns == 0, weight > 0, not overloaded) wins at once; else sed.
table('nq', () => new NeverQueueScheduler(), [
  { name: 'the first idle server wins even against a better ratio', rows: [[1, 2, 0], [5, 1, 0], [1, 0, 0]], want: 'C' },
  { name: 'inactive connections do not make a server busy', rows: [[1, 1, 0], [1, 0, 50]], want: 'B' },
  { name: 'an idle weight-0 server is skipped', rows: [[0, 0, 0], [1, 3, 0]], want: 'B' },
  { name: 'an idle overloaded server is skipped', rows: [[1, 0, 0, true], [1, 3, 0]], want: 'B' },
  { name: 'no idle server: sed ratio', rows: [[1, 2, 0], [2, 3, 0]], want: 'B' }, // 3*2 > 4*1
  { name: 'no idle server: tie keeps the first', rows: [[1, 1, 0], [1, 1, 0]], want: 'A' },
  { name: 'nothing available', rows: [[0, 0, 0]], want: '-' },
]);

test('lc scripted: each choice opens a connection', () => {
  const l = dests(1, 1, 1);
  const s = new LeastConnectionScheduler();
  assert.deepEqual(run(s, l, 4, true), ['A', 'B', 'C', 'A']);
  // A closes both of its connections and B gets 300 UDP flows: A=0, B=256+300, C=256.
  const [a, b] = l;
  assert.ok(a && b);
  a.activeConns = 0;
  b.inactiveConns = 300;
  // A (0) -> A=256; A ties C at 256 and comes first -> A=512; then C (256) is least.
  assert.deepEqual(run(s, l, 3, true), ['A', 'A', 'C']);
});

test('wlc scripted: weights 3 and 1 converge to 3:1', () => {
  // A=0,B=0: A (tie). A=256: 256*1 > 0*3 -> B. A=256,B=256: 256*1 > 256*3? no -> A.
  // A=512: 512 > 768? no -> A. A=768: 768 > 768? no (tie) -> A. A=1024: 1024 > 768 -> B.
  const l = dests(3, 1);
  assert.deepEqual(run(new WeightedLeastConnectionScheduler(), l, 6, true), ['A', 'B', 'A', 'A', 'A', 'B']);
});

test('sed scripted: weights 1 and 2', () => {
  // overheads (act+1): (1,1): 1*2 > 1*1 -> B. (1,2): 2 > 2? no -> A. (2,2): 4 > 2 -> B.
  // (2,3): 4 > 3 -> B. (2,4): 4 > 4? no -> A. (3,4): 6 > 4 -> B.
  const l = dests(1, 2);
  assert.deepEqual(run(new ShortestExpectedDelayScheduler(), l, 6, true), ['B', 'A', 'B', 'B', 'A', 'B']);
});

test('nq scripted: idle servers first, then sed until the ratio ties', () => {
  // A idle -> A; B idle -> B. Then A's overhead is 2 (weight 1) and B's is act+1 (weight 4):
  // B wins while 2*4 > (act+1)*1, i.e. up to act 6; at act 7 it is a tie and A (first) wins.
  const l = dests(1, 4);
  assert.deepEqual(run(new NeverQueueScheduler(), l, 9, true), ['A', 'B', 'B', 'B', 'B', 'B', 'B', 'B', 'A']);
});
