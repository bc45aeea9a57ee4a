import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RoundRobinScheduler } from '../../src/scheduling/rr.js';
import { D, dests, run } from './fixtures.js';

test('rr cycles through the list in order', () => {
  const s = new RoundRobinScheduler();
  const l = dests(1, 1, 1);
  s.update(l);
  assert.deepEqual(run(s, l, 7), ['A', 'B', 'C', 'A', 'B', 'C', 'A']);
});

test('rr skips weight-0 (quiesced) and overloaded destinations', () => {
  const s = new RoundRobinScheduler();
  const l = dests(1, 0, 1, 1);
  const c = l[2];
  assert.ok(c);
  c.overloaded = true;
  s.update(l);
  assert.deepEqual(run(s, l, 4), ['A', 'D', 'A', 'D']);
  // The flag clears. The cursor is on D, so the walk wraps to A first, then B (weight 0) is
  // passed over and C is taken.
  c.overloaded = false;
  assert.deepEqual(run(s, l, 3), ['A', 'C', 'D']);
});

test('rr returns nothing when all are unavailable, and the cursor does not move', () => {
  const s = new RoundRobinScheduler();
  const l = dests(1, 1, 1);
  s.update(l);
  assert.deepEqual(run(s, l, 1), ['A']);
  for (const d of l) d.overloaded = true;
  assert.deepEqual(run(s, l, 2), ['-', '-']);
  for (const d of l) d.overloaded = false;
  assert.deepEqual(run(s, l, 1), ['B']);
});

interface UpdateCase {
  readonly name: string;
  readonly before: number; // picks before the update
  readonly next: (l: D[]) => D[]; // the new kernel-order list
  readonly want: string[]; // picks after the update
}

// ip_vs_rr_del_dest: when the cursor's destination is deleted the cursor moves to the entry
// before it (p->next->prev), so scheduling resumes with the entry that followed it.
const updates: UpdateCase[] = [
  { name: 'delete the current (middle) destination', before: 2, next: ([a, , c, d]) => [a, c, d].filter((x): x is D => !!x), want: ['C', 'D', 'A'] },
  { name: 'delete the current destination when it is first: cursor goes to the head', before: 1, next: ([, b, c, d]) => [b, c, d].filter((x): x is D => !!x), want: ['B', 'C', 'D'] },
  { name: 'delete the current destination when it is last: wraps to the first', before: 4, next: ([a, b, c]) => [a, b, c].filter((x): x is D => !!x), want: ['A', 'B', 'C'] },
  { name: 'delete another destination: cursor stays', before: 1, next: ([a, b, , d]) => [a, b, d].filter((x): x is D => !!x), want: ['B', 'D', 'A'] },
  // Additions are linked at the head (kernel order X, A, B, C, D); the cursor stays on A.
  { name: 'add a destination at the head: cursor stays', before: 1, next: (l) => [new D('X', 1, '198.18.0.99'), ...l], want: ['B', 'C', 'D', 'X', 'A'] },
  // Add X (head) then delete the current A: the cursor moves to A's predecessor, X.
  { name: 'add then delete the current destination', before: 1, next: ([, b, c, d]) => [new D('X', 1, '198.18.0.99'), b, c, d].filter((x): x is D => !!x), want: ['B', 'C', 'D', 'X'] },
];

for (const u of updates) {
  test(`rr update: ${u.name}`, () => {
    const s = new RoundRobinScheduler();
    const l = dests(1, 1, 1, 1);
    s.update(l);
    run(s, l, u.before);
    const next = u.next(l);
    s.update(next);
    assert.deepEqual(run(s, next, u.want.length), u.want);
  });
}

test('rr re-syncs when handed a changed list without update()', () => {
  const s = new RoundRobinScheduler();
  const l = dests(1, 1, 1);
  s.update(l);
  assert.deepEqual(run(s, l, 2), ['A', 'B']);
  const next = l.filter((d) => d.name !== 'B');
  assert.deepEqual(run(s, next, 2), ['C', 'A']);
});
