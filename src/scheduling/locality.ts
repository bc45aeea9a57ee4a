/**
 * The machinery lblc and lblcr share (ip_vs_lblc.c / ip_vs_lblcr.c): the 1024-bucket table of
 * per-destination-address entries, and the periodic garbage-collection timer.
 *
 * Timer model: init_service arms the timer for now + CHECK_EXPIRE_INTERVAL (60 s); each firing
 * re-arms it 60 s later (mod_timer(jiffies + 60 s)). We replay every firing due up to the
 * current time (from the injected clock) before each scheduling decision or update, each firing
 * at its own nominal time. The counter starts at 1 and counts firings that found the table
 * within max_size (16384 entries); a firing that finds it at a multiple of
 * COUNT_FOR_FULL_EXPIRATION (30) runs the full expiration check instead, dropping entries unused
 * for sysctl_lbl{c,cr}_expiration (24 h), and resets it to 1. So with a table that never
 * overflows the full check runs every 30 minutes (at 30 min, 60 min, ... after creation). A
 * firing that finds the table over max_size collects instead (without counting): entries unused
 * for ENTRY_TIMEOUT (6 min) are dropped, bucket by bucket from the rover, until 4/3 of the excess
 * (at most max_size / 2) are gone.
 *
 * Approximations (documented, deliberate): time is the injected millisecond clock rather than
 * jiffies at HZ resolution, and firings happen at their nominal times; the kernel's timer wheel
 * may run a 60 s timer up to a few seconds late (a level-4 bucket at HZ=1000 has 4.096 s
 * granularity), and a firing due exactly at the moment of a scheduling decision is taken to run
 * first.
 */
import { hash32 } from './common.js';
import type { SchedDest } from './scheduler.js';

export const CHECK_EXPIRE_INTERVAL_MS = 60 * 1000;
export const ENTRY_TIMEOUT_MS = 6 * 60 * 1000;
export const DEFAULT_EXPIRATION_MS = 24 * 60 * 60 * 1000;
export const COUNT_FOR_FULL_EXPIRATION = 30;
export const LOCALITY_TAB_BITS = 10;
export const LOCALITY_TAB_SIZE = 1 << LOCALITY_TAB_BITS;
const LOCALITY_TAB_MASK = LOCALITY_TAB_SIZE - 1;
/** tbl->max_size = IP_VS_LBLC_TAB_SIZE * 16. */
export const LOCALITY_MAX_SIZE = LOCALITY_TAB_SIZE * 16;

export interface LocalityEntry {
  /** ip_vs_addr_equal identity of the destination (virtual) address. */
  readonly addrId: string;
  /** ip_vs_lblc_hashkey / ip_vs_lblcr_hashkey of the address. */
  readonly bucket: number;
  /** en->lastuse, ms. */
  lastuse: number;
}

/** ip_vs_lblc_hashkey / ip_vs_lblcr_hashkey given ntohl(addr_fold). */
export function localityHashKey(fold: number): number {
  return hash32(fold, LOCALITY_TAB_BITS);
}

export class LocalityTable<E extends LocalityEntry> {
  /** Each bucket's hlist, head first. */
  private readonly buckets: E[][] = Array.from({ length: LOCALITY_TAB_SIZE }, () => []);
  private readonly byAddr = new Map<string, E>();
  /** tbl->entries: the kernel's counter (lblc lets it drift, see lblc.ts). */
  entries = 0;
  private rover = 0;
  private counter = 1;
  private nextFiring: number;

  constructor(start: number, private readonly expirationMs: number) {
    this.nextFiring = start + CHECK_EXPIRE_INTERVAL_MS;
  }

  get(addrId: string): E | undefined {
    return this.byAddr.get(addrId);
  }

  /** Live entries (for tests and the tracer), bucket order, head first. */
  all(): E[] {
    return this.buckets.flat();
  }

  /** ip_vs_lbl{c,cr}_hash: hlist_add_head and entries++. */
  hash(en: E): void {
    this.buckets[en.bucket]?.unshift(en);
    this.byAddr.set(en.addrId, en);
    this.entries++;
  }

  /** hlist_del: unlinks without touching the counter. */
  unlink(en: E): void {
    const b = this.buckets[en.bucket];
    if (b) {
      const i = b.indexOf(en);
      if (i >= 0) b.splice(i, 1);
    }
    if (this.byAddr.get(en.addrId) === en) this.byAddr.delete(en.addrId);
  }

  /** Replays every timer firing due at or before `now`. */
  runTimers(now: number): void {
    while (this.nextFiring <= now) {
      const t = this.nextFiring;
      this.checkExpire(t);
      this.nextFiring = t + CHECK_EXPIRE_INTERVAL_MS;
    }
  }

  /** ip_vs_lbl{c,cr}_check_expire at time t. */
  private checkExpire(t: number): void {
    if (this.counter % COUNT_FOR_FULL_EXPIRATION === 0) {
      this.fullCheck(t);
      this.counter = 1;
      return;
    }
    if (this.entries <= LOCALITY_MAX_SIZE) {
      this.counter++;
      return;
    }
    let goal = Math.trunc(((this.entries - LOCALITY_MAX_SIZE) * 4) / 3);
    if (goal > LOCALITY_MAX_SIZE / 2) goal = LOCALITY_MAX_SIZE / 2;
    let j = this.rover;
    for (let i = 0; i < LOCALITY_TAB_SIZE; i++) {
      j = (j + 1) & LOCALITY_TAB_MASK;
      for (const en of [...(this.buckets[j] ?? [])]) {
        if (t < en.lastuse + ENTRY_TIMEOUT_MS) continue; // time_before(now, lastuse + ENTRY_TIMEOUT)
        this.unlink(en);
        this.entries--;
        goal--;
      }
      if (goal <= 0) break;
    }
    this.rover = j;
  }

  /** ip_vs_lbl{c,cr}_full_check at time t: drops entries unused for the expiration. */
  private fullCheck(t: number): void {
    if (this.byAddr.size === 0) return; // nothing to drop; the rover ends where it started
    let j = this.rover;
    for (let i = 0; i < LOCALITY_TAB_SIZE; i++) {
      j = (j + 1) & LOCALITY_TAB_MASK;
      for (const en of [...(this.buckets[j] ?? [])]) {
        if (t < en.lastuse + this.expirationMs) continue;
        this.unlink(en);
        this.entries--;
      }
    }
    this.rover = j;
  }
}

/**
 * is_overloaded(dest, svc) of lblc/lblcr: the destination has more active connections than its
 * weight and some destination of the service has fewer than half its weight.
 */
export function isLocalityOverloaded(dest: SchedDest, dests: readonly SchedDest[]): boolean {
  if ((dest.activeConns | 0) > (dest.weight | 0)) {
    for (const d of dests) if ((d.activeConns | 0) * 2 < (d.weight | 0)) return true;
  }
  return false;
}
