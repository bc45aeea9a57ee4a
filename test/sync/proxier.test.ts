import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backends/backend.js';
import type { Snapshot } from '../../src/core/snapshot.js';
import { ProxierHealth } from '../../src/observability/health.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { FakeClock } from '../../src/platform/clock.js';
import { Proxier } from '../../src/sync/proxier.js';
import { ep, node, slice, svc } from '../helpers/objects.js';

class RecordingBackend implements Backend {
  readonly mode = 'userspace' as const;
  readonly synced: Snapshot[] = [];
  failNext = 0;
  closed = 0;
  sync(s: Snapshot): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      return Promise.reject(new Error('kernel said no'));
    }
    this.synced.push(s);
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed++;
    return Promise.resolve();
  }
}

function setup(sources = ['files']) {
  const clock = new FakeClock();
  const backend = new RecordingBackend();
  const metrics = new ProxyMetrics();
  const health = new ProxierHealth(clock, 60_000);
  const log = memoryLogger();
  const p = new Proxier({ backend, nodeName: 'n1', clock, sources, minSyncPeriodMs: 1000, syncPeriodMs: 30_000, retryMs: 5000, metrics, health, log });
  return { clock, backend, metrics, health, log, p };
}

test('proxier: nothing is programmed until every source reports synced', async () => {
  const { clock, backend, p } = setup(['files', 'api']);
  p.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  p.handle({ kind: 'synced', source: 'files' });
  await clock.advance(60_000);
  assert.equal(backend.synced.length, 0);
  p.handle({ kind: 'synced', source: 'api' });
  await clock.advance(0);
  assert.equal(backend.synced.length, 1);
  assert.deepEqual([...(backend.synced[0]?.servicePorts.keys() ?? [])], ['ns1/web:http']);
  await p.close();
  assert.equal(backend.closed, 1);
});

test('proxier: a burst of changes becomes one partial sync after minSyncPeriod', async () => {
  const { clock, backend, p, metrics } = setup();
  p.handle({ kind: 'synced', source: 'files' });
  await clock.advance(0);
  assert.equal(backend.synced.length, 1);
  assert.equal(backend.synced[0]?.full, true);
  for (let i = 0; i < 5; i++) {
    p.handle({ kind: 'Service', type: 'add', object: svc('ns1', `s${i}`, { clusterIP: `198.18.100.${i + 1}` }) });
    await clock.advance(10);
  }
  await clock.advance(1000);
  assert.equal(backend.synced.length, 2);
  assert.equal(backend.synced[1]?.full, false);
  assert.equal(backend.synced[1]?.changed.size, 5);
  const text = await metrics.text();
  assert.match(text, /kubeproxy_sync_proxy_rules_service_changes_total 5/);
  assert.match(text, /kubeproxy_sync_proxy_rules_duration_seconds_count 2/);
  await p.close();
});

test('proxier: a failed sync keeps nothing half-done, is counted and retried as a full sync', async () => {
  const { clock, backend, p, log, metrics, health } = setup();
  p.handle({ kind: 'synced', source: 'files' });
  await clock.advance(0);
  backend.failNext = 1;
  p.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.0.1')]) });
  await clock.advance(1000);
  assert.equal(backend.synced.length, 1, 'failed sync recorded nothing');
  assert.ok(log.lines.some((l) => l.startsWith('E') && l.includes('kernel said no')));
  assert.match(await metrics.text(), /kproxy_sync_proxy_rules_failures_total\{mode="userspace"\} 1/);
  await clock.advance(4999);
  assert.equal(backend.synced.length, 1);
  await clock.advance(1);
  assert.equal(backend.synced.length, 2);
  assert.equal(backend.synced[1]?.full, true, 'retry is a full sync');
  assert.equal(health.healthz().healthy, true);
  await p.close();
});

test('proxier: health turns unhealthy when queued changes wait past the timeout, and node deletion taint fails /healthz only', async () => {
  const { clock, backend, p, health } = setup();
  p.handle({ kind: 'synced', source: 'files' });
  await clock.advance(0);
  assert.equal(health.healthz().healthy, true);
  backend.failNext = 100;
  p.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await clock.advance(59_000);
  assert.equal(health.healthz().healthy, true);
  await clock.advance(2_000);
  assert.equal(health.healthz().healthy, false);
  assert.equal(health.livez().healthy, false);
  backend.failNext = 0;
  await clock.advance(5_000);
  assert.equal(health.healthz().healthy, true);
  p.handle({ kind: 'Node', type: 'add', object: node('n1', { toBeDeleted: true }) });
  assert.equal(health.healthz().healthy, false);
  assert.equal(health.healthz().nodeEligible, false);
  assert.equal(health.livez().healthy, true);
  p.handle({ kind: 'Node', type: 'update', previous: node('n1', { toBeDeleted: true }), object: node('n1') });
  assert.equal(health.healthz().healthy, true, 'the taint removed: eligible again');
  p.handle({ kind: 'Node', type: 'update', previous: node('n1'), object: node('n1', { deleting: true }) });
  assert.equal(health.healthz().nodeEligible, false, 'a deletionTimestamp makes the node ineligible');
  p.handle({ kind: 'Node', type: 'delete', object: node('n1', { deleting: true }) });
  assert.equal(health.healthz().nodeEligible, false, 'as upstream, the deleted Node\'s own state decides');
  p.handle({ kind: 'Node', type: 'add', object: node('n2', { toBeDeleted: true }) });
  p.handle({ kind: 'Node', type: 'add', object: node('n1') });
  assert.equal(health.healthz().nodeEligible, true, 'another node\'s taint does not matter');
  await p.close();
});

test('proxier: kubeproxy_network_programming_duration_seconds measures from the slice\'s last-change-trigger-time', async () => {
  const { clock, p, metrics } = setup();
  p.handle({ kind: 'synced', source: 'files' });
  await clock.advance(0);
  const changedAt = new Date(clock.wallNow() - 2_000).toISOString();
  const s = { ...slice('ns1', 'w', 'web', [ep('198.18.0.1')]), annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': changedAt } };
  p.handle({ kind: 'EndpointSlice', type: 'add', object: s });
  await clock.advance(1000);
  const text = await metrics.text();
  assert.match(text, /kubeproxy_network_programming_duration_seconds_count 1/);
  const sum = Number(/kubeproxy_network_programming_duration_seconds_sum (\S+)/.exec(text)?.[1]);
  assert.ok(sum >= 2.9 && sum <= 3.1, `2 s before the event plus the 1 s min-sync wait, got ${sum}`);
  await p.close();
});
