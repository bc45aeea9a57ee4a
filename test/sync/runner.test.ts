import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/platform/clock.js';
import { BoundedFrequencyRunner } from '../../src/sync/runner.js';

function setup(min: number, max: number, body?: () => Promise<void>) {
  const clock = new FakeClock();
  const runs: number[] = [];
  const r = new BoundedFrequencyRunner(async () => {
    runs.push(clock.now());
    await body?.();
  }, { minIntervalMs: min, maxIntervalMs: max, clock });
  return { clock, runs, r };
}

test('runner: first request runs at once; a burst within minInterval coalesces into one run at the boundary', async () => {
  const { clock, runs, r } = setup(1000, 30_000);
  r.run();
  await clock.advance(0);
  assert.deepEqual(runs, [0]);
  await clock.advance(100);
  r.run(); r.run(); r.run();
  await clock.advance(500);
  assert.deepEqual(runs, [0], 'not before minInterval');
  await clock.advance(400);
  assert.deepEqual(runs, [0, 1000]);
  await clock.advance(5000);
  assert.deepEqual(runs, [0, 1000], 'no extra runs without requests');
});

test('runner: runs at least every maxInterval once started', async () => {
  const { clock, runs, r } = setup(1000, 10_000);
  r.start();
  await clock.advance(25_000);
  assert.deepEqual(runs, [10_000, 20_000]);
  r.run();
  await clock.advance(0);
  assert.deepEqual(runs, [10_000, 20_000, 25_000]);
  await clock.advance(10_000);
  assert.deepEqual(runs, [10_000, 20_000, 25_000, 35_000], 'periodic timer restarts from the last run');
  await r.close();
});

test('runner: retryAfter schedules a run; runs never overlap', async () => {
  let release: () => void = () => undefined;
  let concurrent = 0;
  let maxConcurrent = 0;
  const { clock, runs, r } = setup(0, 60_000, async () => {
    concurrent++;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    await new Promise<void>((res) => { release = res; });
    concurrent--;
  });
  r.run();
  await clock.advance(0);
  r.run();
  await clock.advance(10);
  assert.equal(runs.length, 1, 'second request waits for the first run');
  release();
  await clock.advance(0);
  assert.equal(runs.length, 2);
  release();
  await clock.advance(0);
  r.retryAfter(5000);
  await clock.advance(4999);
  assert.equal(runs.length, 2);
  await clock.advance(1);
  assert.equal(runs.length, 3);
  release();
  await clock.advance(0);
  assert.equal(maxConcurrent, 1);
  await r.close();
  r.run();
  await clock.advance(100_000);
  assert.equal(runs.length, 3, 'closed runner never runs');
});
