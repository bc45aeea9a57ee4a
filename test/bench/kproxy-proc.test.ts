/**
 * The benches' reading of kproxy's log: the "synced proxy rules" lines the real Proxier writes
 * are parsed (also when a chunk splits a line), and the sync for a change is told apart from a
 * periodic sync that changed nothing (bench:sync once reported that one as the partial).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backends/backend.js';
import { ProxierHealth } from '../../src/observability/health.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { FakeClock } from '../../src/platform/clock.js';
import { Proxier } from '../../src/sync/proxier.js';
import { SyncLog } from '../../bench/kproxy-proc.js';
import { ep, slice, svc } from '../helpers/objects.js';

test('SyncLog: parses the Proxier\'s sync lines and skips a periodic sync when waiting for a change', async () => {
  const clock = new FakeClock();
  const log = memoryLogger();
  const backend: Backend = { mode: 'userspace', sync: () => Promise.resolve(), close: () => Promise.resolve() };
  const p = new Proxier({
    backend, nodeName: 'n1', clock, sources: ['files'], minSyncPeriodMs: 0, syncPeriodMs: 30_000, retryMs: 5000,
    metrics: new ProxyMetrics(), health: new ProxierHealth(clock, 60_000), log,
  });
  p.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  p.handle({ kind: 'synced', source: 'files' });
  await clock.advance(0); // full sync
  await clock.advance(30_000); // periodic sync, nothing changed
  p.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'web-1', 'web', [ep('198.18.0.1')]) });
  await clock.advance(0); // the change's partial sync
  await p.close();

  let ended!: (why: string) => void;
  const sl = new SyncLog(new Promise((r) => (ended = r)), () => 'tail');
  const text = log.lines.join('\n') + '\n';
  const cut = text.indexOf('synced proxy rules') + 5; // a chunk boundary inside a sync line
  sl.feed(text.slice(0, cut), 1);
  sl.feed(text.slice(cut), 2);
  assert.deepEqual(sl.syncs.map((s) => [s.full, s.changed]), [[true, 1], [false, 0], [false, 1]]);
  assert.ok(sl.syncs.every((s) => Number.isFinite(s.elapsedMs) && s.at === 2));
  assert.equal(await sl.waitChangeSync(1, 1000), sl.syncs[2]);
  assert.equal(await sl.waitSync(2, 1000), sl.syncs[1]);

  const pending = sl.waitChangeSync(3, 60_000);
  ended('kproxy exited (1)');
  await assert.rejects(pending, /kproxy exited \(1\) before sync #4; stderr tail:\ntail/);
});
