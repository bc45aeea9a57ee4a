import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createScheduler } from '../../src/scheduling/index.js';
import { WeightedRoundRobinScheduler } from '../../src/scheduling/wrr.js';
import { dests, run } from './fixtures.js';

// ip_vs_wrr: di = gcd of the positive weights, mw = max weight - (di - 1), cw starts at mw; each
// pass takes destinations with weight >= cw, then cw -= di, wrapping to mw when it reaches 0.

test('wrr with weights 4,3,2 bound to an existing list gives the well-known A A B A B C A B C', () => {
  const l = dests(4, 3, 2);
  const s = new WeightedRoundRobinScheduler({ initialDests: l });
  // cw=4: A | cw=3: A B | cw=2: A B C | cw=1: A B C, and again.
  const cycle = ['A', 'A', 'B', 'A', 'B', 'C', 'A', 'B', 'C'];
  assert.deepEqual(run(s, l, 18), [...cycle, ...cycle]);
});

test('wrr created empty then given its destinations replays add_dest: first pass at cw=1', () => {
  // The kernel links each added destination at the head, so [A, B, C] was added C, B, A.
  // Empty service: di=1, mw=0, cw=0. add C(2): di=2, mw=1, cw=0 -> mw = 1. add B(3): di=1,
  // mw=3, cw=1 kept. add A(4): di=1, mw=4, cw=1 kept. So the first pass takes everyone with
  // weight >= 1 (A B C); then cw wraps to mw=4 and the steady cycle begins.
  const l = dests(4, 3, 2);
  const s = createScheduler('wrr', { now: () => 0 });
  s.update(l);
  assert.deepEqual(run(s, l, 12), ['A', 'B', 'C', 'A', 'A', 'B', 'A', 'B', 'C', 'A', 'B', 'C']);
});

test('wrr: a weight-0 (quiesced) destination gets nothing and the gcd ignores it', () => {
  // Weights 4,0,2: di=2, mw=4-1=3. cw=3: A | cw=1: A C | wrap: cw=3 ...
  const l = dests(4, 0, 2);
  const s = new WeightedRoundRobinScheduler({ initialDests: l });
  assert.deepEqual(run(s, l, 6), ['A', 'A', 'C', 'A', 'A', 'C']);
});

test('wrr skips an overloaded destination in every pass', () => {
  // 4,3,2 with B overloaded: cw=4: A | cw=3: A | cw=2: A C | cw=1: A C.
  const l = dests(4, 3, 2);
  const b = l[1];
  assert.ok(b);
  b.overloaded = true;
  const s = new WeightedRoundRobinScheduler({ initialDests: l });
  assert.deepEqual(run(s, l, 7), ['A', 'A', 'A', 'C', 'A', 'C', 'A']);
});

test('wrr: deleting a destination mid-cycle resets the position to the head, keeping cw', () => {
  const l = dests(4, 3, 2);
  const s = new WeightedRoundRobinScheduler({ initialDests: l });
  assert.deepEqual(run(s, l, 3), ['A', 'A', 'B']); // now cw=3, cl=B
  // del A: weights 3,2 -> di=1, mw=3; cw=3 is kept (not > mw); cl = head.
  // cw=3: B | cw=2: B C | cw=1: B C | wrap cw=3: B
  const next = l.slice(1);
  s.update(next);
  assert.deepEqual(s.mark, { cl: undefined, cw: 3, mw: 3, di: 1 });
  assert.deepEqual(run(s, next, 6), ['B', 'B', 'C', 'B', 'C', 'B']);
});

test('wrr: adding a destination with di > 1 rounds cw to a multiple of di plus 1', () => {
  // Weights A=4, B=2: di=2, mw=3, cw=3. First pick A (cw stays 3).
  const [a, b] = dests(4, 2);
  assert.ok(a && b);
  const l = [a, b];
  const s = new WeightedRoundRobinScheduler({ initialDests: l });
  assert.deepEqual(run(s, l, 1), ['A']);
  // add C=6 at the head: di=gcd(6,4,2)=2, mw=6-1=5, cw=3 -> (3/2)*2+1 = 3, cl = head.
  // cw=3: C A | cw=1: C A B | cw=5: C | cw=3: C A | cw=1: C A B
  const c = dests(0, 0, 6)[2];
  assert.ok(c);
  const next = [c, a, b];
  s.update(next);
  assert.deepEqual(s.mark, { cl: undefined, cw: 3, mw: 5, di: 2 });
  assert.deepEqual(run(s, next, 11), ['C', 'A', 'C', 'A', 'B', 'C', 'C', 'A', 'C', 'A', 'B']);
});

test('wrr: a weight change is an upd_dest (position back to the head)', () => {
  const l = dests(4, 3, 2);
  const s = new WeightedRoundRobinScheduler({ initialDests: l });
  assert.deepEqual(run(s, l, 3), ['A', 'A', 'B']); // cw=3, cl=B
  const c = l[2];
  assert.ok(c);
  c.weight = 4; // handed over without update(): the scheduler notices and replays upd_dest
  // di=1, mw=4, cw=3 kept, cl=head. cw=3: A B C | cw=2: A B C | cw=1: A B C | cw=4: A C
  assert.deepEqual(run(s, l, 11), ['A', 'B', 'C', 'A', 'B', 'C', 'A', 'B', 'C', 'A', 'C']);
});

test('wrr returns nothing when every destination is overloaded or weight 0', () => {
  const l = dests(2, 0, 1);
  const s = new WeightedRoundRobinScheduler({ initialDests: l });
  const [a, , c] = l;
  assert.ok(a && c);
  a.overloaded = true;
  c.overloaded = true;
  assert.deepEqual(run(s, l, 2), ['-', '-']);
  a.overloaded = false;
  assert.deepEqual(run(s, l, 2), ['A', 'A']);
  const zero = dests(0, 0);
  const z = new WeightedRoundRobinScheduler({ initialDests: zero });
  assert.deepEqual(run(z, zero, 1), ['-']); // mw == 0: "no destination available"
});
