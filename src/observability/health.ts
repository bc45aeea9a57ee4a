/**
 * Upstream's ProxierHealthServer logic: /healthz is healthy when no queued change has waited
 * longer than the health timeout (2 × sync period) and the node is not being deleted;
 * /livez ignores node eligibility.
 */
import type { Clock } from '../platform/clock.js';

export interface HealthStatus {
  readonly healthy: boolean;
  readonly lastUpdated: Date | undefined;
  readonly currentTime: Date;
  readonly nodeEligible: boolean;
}

export class ProxierHealth {
  private lastUpdatedWall: number | undefined;
  private oldestQueued: number | undefined;
  private nodeEligible = true;

  constructor(private readonly clock: Clock, private readonly healthTimeoutMs: number) {}

  /** A change is waiting to be programmed. */
  queued(): void {
    if (this.oldestQueued === undefined) this.oldestQueued = this.clock.now();
  }

  /** The backend programmed everything that was queued. */
  updated(): void {
    this.oldestQueued = undefined;
    this.lastUpdatedWall = this.clock.wallNow();
  }

  setNodeEligible(eligible: boolean): void {
    this.nodeEligible = eligible;
  }

  private syncHealthy(): boolean {
    if (this.lastUpdatedWall === undefined) {
      // Nothing programmed yet: healthy only while within the timeout of the first queue.
      return this.oldestQueued !== undefined && this.clock.now() - this.oldestQueued < this.healthTimeoutMs;
    }
    return this.oldestQueued === undefined || this.clock.now() - this.oldestQueued < this.healthTimeoutMs;
  }

  healthz(): HealthStatus {
    return this.status(this.syncHealthy() && this.nodeEligible);
  }

  livez(): HealthStatus {
    return this.status(this.syncHealthy());
  }

  private status(healthy: boolean): HealthStatus {
    return {
      healthy,
      lastUpdated: this.lastUpdatedWall === undefined ? undefined : new Date(this.lastUpdatedWall),
      currentTime: new Date(this.clock.wallNow()),
      nodeEligible: this.nodeEligible,
    };
  }
}

export function healthBody(s: HealthStatus): string {
  return JSON.stringify({
    lastUpdated: s.lastUpdated ? s.lastUpdated.toISOString() : '',
    currentTime: s.currentTime.toISOString(),
    nodeEligible: s.nodeEligible,
    healthy: s.healthy,
  });
}
