/**
 * Helpers shared by the kernel-exact schedulers: the kernel's hash_32, address folding, the
 * connection-overhead formulas, and the bookkeeping that turns "here is the complete new list"
 * (our `update(dests)`) into the kernel's add_dest/upd_dest/del_dest events.
 */
import { parseIPv4, parseIPv6 } from '../core/ip.js';
import type { SchedulerName } from '../core/annotations.js';
import type { SchedContext, SchedDest, Scheduler } from './scheduler.js';

/** include/linux/hash.h: GOLDEN_RATIO_32 (kernels >= 4.7). */
export const GOLDEN_RATIO_32 = 0x61c88647;

/** include/linux/hash.h: hash_32(val, bits) = (val * GOLDEN_RATIO_32) >> (32 - bits), u32 arithmetic. */
export function hash32(val: number, bits: number): number {
  return Math.imul(val >>> 0, GOLDEN_RATIO_32) >>> (32 - bits);
}

/**
 * ntohl(addr_fold) as ip_vs_{dh,sh,lblc,lblcr,mh}_hashkey compute it: the IPv4 address as a
 * host-order u32; for IPv6 the XOR of its four big-endian 32-bit words (ntohl distributes over
 * XOR, so folding then converting equals converting then folding). Unparseable text folds to 0.
 */
export function addrFold(ip: string): number {
  const v4 = parseIPv4(ip);
  if (v4 !== undefined) return v4;
  const g = parseIPv6(ip);
  if (!g) return 0;
  let fold = 0;
  for (let i = 0; i < 4; i++) fold ^= (((g[2 * i] ?? 0) << 16) | (g[2 * i + 1] ?? 0)) >>> 0;
  return fold >>> 0;
}

/** A canonical identity for an address (ip_vs_addr_equal), used as a map key. */
export function addrIdentity(ip: string): string {
  const v4 = parseIPv4(ip);
  if (v4 !== undefined) return `4:${v4}`;
  const g = parseIPv6(ip);
  if (g) return `6:${g.join(':')}`;
  return `?:${ip}`;
}

/**
 * include/net/ip_vs.h ip_vs_dest_conn_overhead(): (activeconns << 8) + inactconns, computed in
 * 32-bit arithmetic and returned as the kernel's `unsigned int`.
 */
export function connOverheadU32(d: SchedDest): number {
  return (Math.imul(d.activeConns | 0, 256) + (d.inactiveConns | 0)) >>> 0;
}

/** The same overhead stored into an `int loh/doh` as wlc, lblc and lblcr do. */
export function connOverheadInt(d: SchedDest): number {
  return connOverheadU32(d) | 0;
}

/** `int` weight as atomic_read(&dest->weight) returns it. */
export function weightOf(d: SchedDest): number {
  return d.weight | 0;
}

/** What changed between two complete lists, by `key`. */
export interface ListChange {
  /** Keys new in this list, in new-list order. */
  readonly added: readonly SchedDest[];
  /**
   * Keys that left, in old-list order: the object last handed over for each (the owner may keep
   * updating its counters while its connections drain, as the kernel's dest in the trash).
   */
  readonly removed: readonly SchedDest[];
  /** Keys kept whose weight changed, in new-list order. */
  readonly reweighted: readonly SchedDest[];
  /** Keys of the previous list, in order. */
  readonly previousKeys: readonly string[];
  /** Weights of the previous list by key. */
  readonly previousWeights: ReadonlyMap<string, number>;
}

/**
 * Remembers the list a scheduler last saw (keys and weights, by position), so that a
 * `schedule()` handed a list that differs (the owner did not call `update()`) first applies the
 * difference, and `update()` knows what was added, removed and re-weighted.
 */
export class ListTracker {
  private keys: string[] = [];
  private weights: number[] = [];
  /** The objects last seen, by key: a removed destination is reported as its last object. */
  private objects = new Map<string, SchedDest>();

  /** True when `dests` has the same keys, in the same order, with the same weights. */
  matches(dests: readonly SchedDest[]): boolean {
    if (dests.length !== this.keys.length) return false;
    for (let i = 0; i < dests.length; i++) {
      const d = dests[i];
      if (!d || d.key !== this.keys[i] || d.weight !== this.weights[i]) return false;
    }
    return true;
  }

  /** Computes the change to `dests` and records `dests` as the current list. */
  commit(dests: readonly SchedDest[]): ListChange {
    const previousWeights = new Map<string, number>();
    for (let i = 0; i < this.keys.length; i++) previousWeights.set(this.keys[i] ?? '', this.weights[i] ?? 0);
    const nextKeys = new Set(dests.map((d) => d.key));
    const added: SchedDest[] = [];
    const reweighted: SchedDest[] = [];
    for (const d of dests) {
      const w = previousWeights.get(d.key);
      if (w === undefined) added.push(d);
      else if (w !== d.weight) reweighted.push(d);
    }
    const removed: SchedDest[] = [];
    for (const k of this.keys) {
      if (!nextKeys.has(k)) removed.push(this.objects.get(k) ?? { key: k, ip: '', port: 0, weight: previousWeights.get(k) ?? 0, activeConns: 0, inactiveConns: 0, overloaded: false });
    }
    const previousKeys = this.keys;
    this.keys = dests.map((d) => d.key);
    this.weights = dests.map((d) => d.weight);
    this.objects = new Map(dests.map((d) => [d.key, d]));
    return { added, removed, reweighted, previousKeys, previousWeights };
  }
}

/**
 * Base for schedulers that keep state about the list (rr, wrr, dh, sh, mh, lblc, lblcr).
 * `schedule()` re-syncs first when handed a list that differs from the last `update()`.
 */
export abstract class ListScheduler implements Scheduler {
  abstract readonly name: SchedulerName;
  protected readonly tracker = new ListTracker();

  update(dests: readonly SchedDest[]): void {
    const change = this.tracker.commit(dests);
    this.onUpdate(dests, change);
  }

  schedule(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined {
    if (!this.tracker.matches(dests)) this.update(dests);
    return this.pick(dests, ctx);
  }

  protected abstract onUpdate(dests: readonly SchedDest[], change: ListChange): void;
  protected abstract pick(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined;
}

/** Greatest common divisor (lib/math/gcd.c), for positive ints. */
export function gcd(a: number, b: number): number {
  let x = Math.abs(a);
  let y = Math.abs(b);
  while (y !== 0) {
    const t = x % y;
    x = y;
    y = t;
  }
  return x;
}

/**
 * The kernel's list order after adding and deleting destinations: ip_vs_add_dest() links a new
 * destination at the head of svc->destinations (list_add_rcu), deletion unlinks in place. Given
 * the previous kernel-order list and the keys now wanted (in the order they are added), returns
 * the new kernel-order list: survivors keep their relative order, each added key goes in front
 * (so the last added is first). Owners that mimic IPVS can use this to build the list they pass.
 */
export function kernelListOrder<T extends { readonly key: string }>(previous: readonly T[], wanted: readonly T[]): T[] {
  const wantedKeys = new Map(wanted.map((d) => [d.key, d]));
  const prevKeys = new Set(previous.map((d) => d.key));
  const survivors: T[] = [];
  for (const d of previous) {
    const w = wantedKeys.get(d.key);
    if (w !== undefined) survivors.push(w);
  }
  const added = wanted.filter((d) => !prevKeys.has(d.key));
  return [...added.reverse(), ...survivors];
}
