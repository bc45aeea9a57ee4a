/**
 * The userspace proxy's load balancer for one service port: its endpoints as the kernel
 * scheduler's destination list, the IPVS scheduler itself, ClientIP session affinity, and the
 * failure cool-down that lets the proxy retry another endpoint.
 */
import type { SchedulerName } from '../../core/annotations.js';
import type { Endpoint } from '../../core/endpoints.js';
import type { Clock } from '../../platform/clock.js';
import { createScheduler } from '../../scheduling/index.js';
import type { SchedContext, SchedDest, Scheduler } from '../../scheduling/scheduler.js';

/** A destination with live counters; the scheduler reads it, the proxy mutates it. */
export class Dest implements SchedDest {
  activeConns = 0;
  inactiveConns = 0;
  overloaded = false;
  /** Monotonic ms until which new connections pass this endpoint over after a failure. */
  coolUntil = 0;
  constructor(
    readonly key: string,
    readonly ip: string,
    readonly port: number,
    public weight: number,
  ) {}
}

export interface BalancerOptions {
  readonly scheduler: SchedulerName;
  /** 0 disables ClientIP affinity. */
  readonly affinityTimeoutSeconds: number;
  readonly clock: Clock;
  /** How long a failed endpoint is passed over before it is tried again. */
  readonly cooldownMs: number;
  /** Called whenever an endpoint's connection counts change. */
  readonly onCount?: (dest: Dest) => void;
}

export class Balancer {
  private dests: Dest[] = [];
  private scheduler: Scheduler;
  private schedulerName: SchedulerName;
  private affinityTimeoutMs: number;
  private readonly affinity = new Map<string, { key: string; lastUsed: number }>();

  constructor(private opts: BalancerOptions) {
    this.schedulerName = opts.scheduler;
    this.scheduler = createScheduler(opts.scheduler, { now: () => opts.clock.now() });
    this.affinityTimeoutMs = opts.affinityTimeoutSeconds * 1000;
  }

  get destinations(): readonly Dest[] {
    return this.dests;
  }

  get schedulerNameInUse(): SchedulerName {
    return this.schedulerName;
  }

  /** Applies scheduler and affinity settings that changed on the Service. */
  configure(scheduler: SchedulerName, affinityTimeoutSeconds: number): void {
    if (scheduler !== this.schedulerName) {
      this.schedulerName = scheduler;
      this.scheduler = createScheduler(scheduler, { now: () => this.opts.clock.now() });
      this.scheduler.update(this.dests);
    }
    const ms = affinityTimeoutSeconds * 1000;
    if (ms !== this.affinityTimeoutMs) {
      this.affinityTimeoutMs = ms;
      this.affinity.clear();
    }
  }

  /**
   * Replaces the destination list (endpoints in kernel-list order). Endpoints that stay keep
   * their counters and cool-down; removed ones are forgotten (their open connections hold their
   * own reference and finish undisturbed).
   */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    const old = new Map(this.dests.map((d) => [d.key, d]));
    const next = endpoints.map((e) => {
      const d = old.get(e.key) ?? new Dest(e.key, e.ip, e.port, e.weight);
      d.weight = e.weight;
      return d;
    });
    const same = next.length === this.dests.length && next.every((d, i) => d === this.dests[i] && d.weight === endpoints[i]?.weight);
    this.dests = next;
    if (!same) this.scheduler.update(this.dests);
    const live = new Set(next.map((d) => d.key));
    for (const [client, a] of this.affinity) if (!live.has(a.key)) this.affinity.delete(client);
  }

  /**
   * Chooses the endpoint for a new connection, skipping `tried` ones. Endpoints in cool-down are
   * passed over (as IPVS passes over an overloaded real server) unless nothing else is left.
   */
  pick(ctx: SchedContext, tried: ReadonlySet<string> = new Set()): Dest | undefined {
    const now = this.opts.clock.now();
    if (this.affinityTimeoutMs > 0) {
      const a = this.affinity.get(ctx.clientIP);
      if (a && now - a.lastUsed <= this.affinityTimeoutMs) {
        const d = this.dests.find((x) => x.key === a.key);
        if (d && d.weight > 0 && !tried.has(d.key) && d.coolUntil <= now) {
          a.lastUsed = now;
          return d;
        }
      }
      if (a) this.affinity.delete(ctx.clientIP);
    }
    const triedOrCooling = (d: Dest): boolean => tried.has(d.key) || d.coolUntil > now;
    const triedOnly = (d: Dest): boolean => tried.has(d.key);
    // Retrying (something failed before): when the kernel's algorithm refuses or insists on an
    // endpoint we must avoid (dh/sh/mh refuse when their hashed endpoint is unavailable; lblc
    // keeps a cached one), fall back to the next usable endpoint in list order, as sh's
    // fallback flag does, so the client never sees a failure while any endpoint works.
    const retrying = tried.size > 0 || this.dests.some((d) => d.coolUntil > now);
    let chosen = this.scheduleAvoiding(ctx, triedOrCooling);
    if (retrying) {
      chosen ??= this.firstUsable(triedOrCooling);
      chosen ??= this.scheduleAvoiding(ctx, triedOnly) ?? this.firstUsable(triedOnly);
    }
    if (chosen && this.affinityTimeoutMs > 0) this.affinity.set(ctx.clientIP, { key: chosen.key, lastUsed: now });
    return chosen;
  }

  private firstUsable(avoid: (d: Dest) => boolean): Dest | undefined {
    return this.dests.find((d) => d.weight > 0 && !avoid(d));
  }

  /** The kernel scheduler's choice with `avoid`ed endpoints flagged overloaded; never an avoided one. */
  private scheduleAvoiding(ctx: SchedContext, avoid: (d: Dest) => boolean): Dest | undefined {
    let any = false;
    for (const d of this.dests) {
      d.overloaded = avoid(d);
      if (!d.overloaded) any = true;
    }
    try {
      if (!any) return undefined;
      const s = this.scheduler.schedule(this.dests, ctx);
      const d = s === undefined ? undefined : this.dests.find((x) => x.key === s.key);
      return d === undefined || avoid(d) ? undefined : d;
    } finally {
      for (const d of this.dests) d.overloaded = false;
    }
  }

  /** The endpoint refused or did not answer: pass it over for the cool-down. */
  markFailed(d: Dest): void {
    d.coolUntil = this.opts.clock.now() + this.opts.cooldownMs;
  }

  /** Forgets the client's affinity (its endpoint failed). */
  forgetClient(clientIP: string): void {
    this.affinity.delete(clientIP);
  }

  opened(d: Dest, kind: 'active' | 'inactive'): void {
    if (kind === 'active') d.activeConns++;
    else d.inactiveConns++;
    this.opts.onCount?.(d);
  }

  closed(d: Dest, kind: 'active' | 'inactive'): void {
    if (kind === 'active') d.activeConns = Math.max(0, d.activeConns - 1);
    else d.inactiveConns = Math.max(0, d.inactiveConns - 1);
    this.opts.onCount?.(d);
  }
}
