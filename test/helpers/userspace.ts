/** Drives a UserspaceBackend directly from typed events, with real sockets and a fake clock. */
import { UserspaceBackend } from '../../src/backends/userspace/backend.js';
import type { SchedulerName } from '../../src/core/annotations.js';
import type { SourceEvent } from '../../src/core/events.js';
import { SnapshotBuilder } from '../../src/core/snapshot.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { FakeClock } from '../../src/platform/clock.js';
import { FakeExec } from '../../src/platform/exec.js';

export interface Harness {
  readonly clock: FakeClock;
  readonly backend: UserspaceBackend;
  readonly metrics: ProxyMetrics;
  readonly exec: FakeExec;
  readonly log: ReturnType<typeof memoryLogger>;
  apply(...events: SourceEvent[]): Promise<void>;
  close(): Promise<void>;
}

export function harness(opts: { scheduler?: SchedulerName; connectTimeoutMs?: number; udpIdleTimeoutMs?: number; cooldownMs?: number; drainTimeoutMs?: number } = {}): Harness {
  const clock = new FakeClock();
  const metrics = new ProxyMetrics();
  const log = memoryLogger(4);
  const exec = new FakeExec();
  const backend = new UserspaceBackend({
    clock, log, metrics, exec: exec.exec,
    defaultScheduler: opts.scheduler ?? 'rr',
    bindAddress: '127.0.0.1',
    nodePortAddresses: [],
    connectTimeoutMs: opts.connectTimeoutMs ?? 300,
    udpIdleTimeoutMs: opts.udpIdleTimeoutMs ?? 1000,
    cooldownMs: opts.cooldownMs ?? 10_000,
    drainTimeoutMs: opts.drainTimeoutMs ?? 500,
  });
  const builder = new SnapshotBuilder('node-a');
  return {
    clock, backend, metrics, exec, log,
    async apply(...events) {
      for (const e of events) builder.handle(e);
      await backend.sync(builder.next());
    },
    close: () => backend.close(),
  };
}
