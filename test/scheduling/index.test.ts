import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SCHEDULER_NAMES } from '../../src/core/annotations.js';
import { createScheduler, kernelListOrder } from '../../src/scheduling/index.js';
import { ctx, dests, nameOf } from './fixtures.js';

test('createScheduler makes every scheduler, named as the kernel names it', () => {
  for (const name of SCHEDULER_NAMES) {
    const s = createScheduler(name, { now: () => 0 });
    assert.equal(s.name, name);
    // Nothing to choose from yet.
    assert.equal(s.schedule([], ctx()), undefined, name);
    const l = dests(1, 1, 1);
    s.update(l);
    assert.notEqual(nameOf(l, s.schedule(l, ctx())), '-', name);
  }
});

test('kernelListOrder links added destinations at the head, last added first', () => {
  const [a, b, c, d, e] = dests(1, 1, 1, 1, 1);
  assert.ok(a && b && c && d && e);
  assert.deepEqual(kernelListOrder([], [a, b, c]).map((x) => x.name), ['C', 'B', 'A']);
  // B deleted, D then E added: E D C A.
  assert.deepEqual(kernelListOrder([c, b, a], [a, c, d, e]).map((x) => x.name), ['E', 'D', 'C', 'A']);
});
