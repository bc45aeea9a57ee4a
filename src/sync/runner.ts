/**
 * Upstream's BoundedFrequencyRunner: coalesces bursts of sync requests.
 * - `run()` asks for a run: it happens as soon as possible, but never sooner than
 *   `minIntervalMs` after the previous run started.
 * - `retryAfter(ms)` asks for a run after ms (used after a failed sync).
 * - a run happens at least every `maxIntervalMs` regardless.
 * Runs never overlap; requests made during a run are served after it.
 */
import type { Clock, Timer } from '../platform/clock.js';

export interface RunnerOptions {
  readonly minIntervalMs: number;
  readonly maxIntervalMs: number;
  readonly clock: Clock;
  readonly onError?: (err: unknown) => void;
}

export class BoundedFrequencyRunner {
  private lastRun = Number.NEGATIVE_INFINITY;
  private running = false;
  private pending = false;
  private timer: Timer | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private closed = false;
  private started = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly fn: () => Promise<void>,
    private readonly opts: RunnerOptions,
  ) {}

  /** Starts the periodic schedule (the first periodic run is one maxInterval from now). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.scheduleAt(this.opts.clock.now() + this.opts.maxIntervalMs);
  }

  run(): void {
    if (this.closed) return;
    this.pending = true;
    if (this.running) return;
    this.scheduleAt(Math.max(this.opts.clock.now(), this.lastRun + this.opts.minIntervalMs));
  }

  retryAfter(ms: number): void {
    if (this.closed) return;
    this.scheduleAt(Math.max(this.opts.clock.now() + ms, this.lastRun + this.opts.minIntervalMs));
  }

  /** Resolves when no run is in progress. */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Idempotent: cancels timers and waits for a run in progress to finish. */
  async close(): Promise<void> {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.idle();
  }

  private scheduleAt(at: number): void {
    if (this.closed) return;
    if (this.timer && this.timerAt <= at) return;
    this.timer?.cancel();
    this.timerAt = at;
    this.timer = this.opts.clock.setTimer(() => {
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      void this.tick();
    }, at - this.opts.clock.now());
  }

  private async tick(): Promise<void> {
    if (this.closed) return;
    if (this.running) {
      this.pending = true;
      return;
    }
    this.running = true;
    this.pending = false;
    this.lastRun = this.opts.clock.now();
    try {
      await this.fn();
    } catch (err) {
      this.opts.onError?.(err);
    } finally {
      this.running = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
    if (this.closed) return;
    if (this.started) this.scheduleAt(this.lastRun + this.opts.maxIntervalMs);
    if (this.pending) this.scheduleAt(Math.max(this.opts.clock.now(), this.lastRun + this.opts.minIntervalMs));
  }
}
