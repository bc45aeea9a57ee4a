/**
 * The proxier: source events → trackers → snapshot → backend, driven by the bounded-frequency
 * runner. Nothing is programmed until every source has reported `synced`.
 */
import { errorMessage } from '../core/errors.js';
import type { SourceEvent } from '../core/events.js';
import { SnapshotBuilder, type Snapshot } from '../core/snapshot.js';
import type { Backend } from '../backends/backend.js';
import type { ProxierHealth } from '../observability/health.js';
import type { Logger } from '../observability/log.js';
import type { ProxyMetrics } from '../observability/metrics.js';
import type { Clock } from '../platform/clock.js';
import { BoundedFrequencyRunner } from './runner.js';

export interface ProxierOptions {
  readonly backend: Backend;
  readonly nodeName: string;
  readonly clock: Clock;
  /** Names of the sources that must report synced before the first sync. */
  readonly sources: readonly string[];
  readonly minSyncPeriodMs: number;
  readonly syncPeriodMs: number;
  /** Delay before retrying a failed sync (upstream retries after the sync period). */
  readonly retryMs?: number;
  readonly metrics: ProxyMetrics;
  readonly health: ProxierHealth;
  readonly log: Logger;
}

export class Proxier {
  private readonly builder: SnapshotBuilder;
  private readonly runner: BoundedFrequencyRunner;
  private readonly unsynced: Set<string>;
  private needFull = false;
  private closed = false;
  private syncs = 0;
  private failures = 0;
  private lastCounters = { serviceChanges: 0, endpointChanges: 0 };

  constructor(private readonly opts: ProxierOptions) {
    this.builder = new SnapshotBuilder(opts.nodeName);
    this.unsynced = new Set(opts.sources);
    this.runner = new BoundedFrequencyRunner(() => this.syncOnce(), {
      minIntervalMs: opts.minSyncPeriodMs,
      maxIntervalMs: opts.syncPeriodMs,
      clock: opts.clock,
      onError: (err) => opts.log.error('sync failed unexpectedly', { err: errorMessage(err) }),
    });
  }

  /** The event sink handed to sources. */
  readonly handle = (ev: SourceEvent): void => {
    if (this.closed) return;
    if (ev.kind === 'synced') {
      if (this.unsynced.delete(ev.source) && this.unsynced.size === 0) {
        this.opts.log.info('all sources synced; programming the backend', { mode: this.opts.backend.mode }, 2);
        this.runner.start();
        this.queue();
      }
      return;
    }
    if (ev.kind === 'Node' && ev.object.name === this.opts.nodeName) {
      // Upstream's SyncNode, on add, update and delete alike: a Node being deleted or tainted
      // ToBeDeletedByClusterAutoscaler is not eligible for load-balancer traffic (/healthz 503).
      this.opts.health.setNodeEligible(!ev.object.toBeDeleted && !ev.object.deleting);
    }
    this.builder.handle(ev);
    const c = this.builder.counters;
    this.opts.metrics.serviceChangesTotal.inc(c.serviceChanges - this.lastCounters.serviceChanges);
    this.opts.metrics.endpointChangesTotal.inc(c.endpointChanges - this.lastCounters.endpointChanges);
    this.lastCounters = { ...c };
    if (this.unsynced.size === 0) this.queue();
  };

  get synced(): boolean {
    return this.unsynced.size === 0;
  }

  get stats(): { syncs: number; failures: number } {
    return { syncs: this.syncs, failures: this.failures };
  }

  get snapshot(): Snapshot | undefined {
    return this.builder.snapshot;
  }

  /** Resolves once no sync is running (a sync requested now may still be pending). */
  idle(): Promise<void> {
    return this.runner.idle();
  }

  private queue(): void {
    this.opts.metrics.lastQueued.set(this.opts.clock.wallNow() / 1000);
    this.opts.health.queued();
    this.runner.run();
  }

  private async syncOnce(): Promise<void> {
    if (this.closed || this.unsynced.size > 0) return;
    const start = this.opts.clock.now();
    const snap = this.builder.next(this.needFull);
    try {
      await this.opts.backend.sync(snap);
    } catch (err) {
      this.failures++;
      this.needFull = true;
      this.opts.metrics.syncFailures.inc({ mode: this.opts.backend.mode });
      const retry = this.opts.retryMs ?? this.opts.syncPeriodMs;
      this.opts.log.error('failed to sync proxy rules; keeping the previous rules and retrying with a full sync', {
        mode: this.opts.backend.mode, err: errorMessage(err), retryInMs: retry,
      });
      this.runner.retryAfter(retry);
      return;
    }
    this.needFull = false;
    this.syncs++;
    const seconds = (this.opts.clock.now() - start) / 1000;
    this.opts.metrics.syncDuration.observe(seconds);
    (snap.full ? this.opts.metrics.syncFullDuration : this.opts.metrics.syncPartialDuration).observe(seconds);
    this.opts.metrics.lastSync.set(this.opts.clock.wallNow() / 1000);
    // Upstream: from the change that triggered the endpoints update to its rules being in place.
    for (const at of snap.triggerTimes) {
      const s = (this.opts.clock.wallNow() - at) / 1000;
      if (s >= 0) this.opts.metrics.networkProgrammingDuration.observe(s);
    }
    this.opts.metrics.serviceChangesPending.set(0);
    this.opts.metrics.endpointChangesPending.set(0);
    if (!this.builder.pending) this.opts.health.updated();
    this.opts.log.info('synced proxy rules', {
      mode: this.opts.backend.mode, full: snap.full, changed: snap.changed.size,
      servicePorts: snap.servicePorts.size, elapsed: `${(seconds * 1000).toFixed(1)}ms`,
    }, 2);
  }

  /** Idempotent: stops syncing (waits for a sync in progress), then closes the backend. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.runner.close();
    await this.opts.backend.close();
  }
}
