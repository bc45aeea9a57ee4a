/**
 * lblcr: Locality-Based Least-Connection with Replication (net/netfilter/ipvs/ip_vs_lblcr.c).
 *
 * A cache maps each destination (virtual) address, ctx.vip, to a set of real servers (newest
 * first, as list_add_rcu links them):
 * - On a hit, lastuse is refreshed and the set's weighted-least-connection member is taken
 *   (skipping IP_VS_DEST_F_OVERLOAD, weight-0 and removed members). Then, if the set has more
 *   than one member and was last modified more than sysctl lblcr_expiration (24 h) ago, its
 *   weighted-most-connection member (weight > 0) is erased. If the taken member exists and is
 *   not overloaded in lblc's sense (activeconns > weight while some server of the service has
 *   activeconns * 2 < weight), it is used. Otherwise the service-wide weighted-least-connection
 *   server is chosen and added to the set (if absent; adding/erasing sets lastmod).
 * - On a miss, the service-wide weighted-least-connection server is chosen and a new entry
 *   created with it (not while the table counter exceeds max_size, 16384).
 * - Entries are dropped only by the garbage-collection timer (see locality.ts).
 *
 * The kernel has no add/del/upd hooks for lblcr: set members keep referring to a removed server
 * (held in the trash), which set_min never picks but set_max still weighs with its last weight
 * and counters. We keep the last object the owner handed over for such a server (the owner may
 * keep its counters current while its connections drain; otherwise they are as last seen, an
 * approximation of the kernel's live counters). A server re-added with the same key is the same
 * member again, as the kernel revives the same dest from the trash.
 */
import { ListScheduler, addrFold, addrIdentity, connOverheadInt, type ListChange } from './common.js';
import {
  DEFAULT_EXPIRATION_MS, LOCALITY_MAX_SIZE, LocalityTable, isLocalityOverloaded, localityHashKey, type LocalityEntry,
} from './locality.js';
import type { NowFn, SchedContext, SchedDest } from './scheduler.js';
import { weightedLeastConnection } from './wlc.js';

export interface LblcrOptions {
  readonly now: NowFn;
  /** sysctl net.ipv4.vs.lblcr_expiration in ms; default 24 h. */
  readonly expirationMs?: number;
}

interface DestSet {
  /** Member keys, head (newest) first. */
  keys: string[];
  /** set->lastmod, ms. */
  lastmod: number;
}

interface LblcrEntry extends LocalityEntry {
  readonly set: DestSet;
}

export class LocalityLeastConnectionReplicationScheduler extends ListScheduler {
  readonly name = 'lblcr' as const;
  private readonly now: NowFn;
  private readonly expirationMs: number;
  private readonly table: LocalityTable<LblcrEntry>;
  private index = new Map<string, number>();
  /** Last object seen of servers that left the service but are still set members. */
  private readonly departed = new Map<string, SchedDest>();

  constructor(options: LblcrOptions) {
    super();
    this.now = options.now;
    this.expirationMs = options.expirationMs ?? DEFAULT_EXPIRATION_MS;
    this.table = new LocalityTable<LblcrEntry>(this.now(), this.expirationMs);
  }

  /** For tests and the tracer: the cache, as (address identity, member keys newest first, lastmod, lastuse). */
  cache(): { addr: string; set: string[]; lastmod: number; lastuse: number }[] {
    return this.table.all().map((e) => ({ addr: e.addrId, set: [...e.set.keys], lastmod: e.set.lastmod, lastuse: e.lastuse }));
  }

  /** Runs the garbage-collection timer firings due by now (scheduling does this too). */
  expire(): void {
    this.table.runTimers(this.now());
  }

  protected onUpdate(dests: readonly SchedDest[], change: ListChange): void {
    this.table.runTimers(this.now());
    this.index = new Map(dests.map((d, i) => [d.key, i]));
    for (const d of change.removed) this.departed.set(d.key, d);
    for (const d of dests) this.departed.delete(d.key);
    if (this.departed.size > 0) {
      const referenced = new Set<string>();
      for (const e of this.table.all()) for (const k of e.set.keys) referenced.add(k);
      for (const k of [...this.departed.keys()]) if (!referenced.has(k)) this.departed.delete(k);
    }
  }

  protected pick(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined {
    const now = this.now();
    this.table.runTimers(now);
    const addrId = addrIdentity(ctx.vip);
    const en = this.table.get(addrId);
    if (en) {
      en.lastuse = now;
      const least = this.setMin(en.set, dests);
      // More than one member and enough time passed by: drop the most loaded one.
      if (en.set.keys.length > 1 && now > en.set.lastmod + this.expirationMs) {
        const m = this.setMax(en.set, dests);
        if (m !== undefined) erase(en.set, m, now);
      }
      if (least && !isLocalityOverloaded(least, dests)) return least;
      const dest = weightedLeastConnection(dests);
      if (!dest) return undefined;
      insert(en.set, dest.key, true, now);
      return dest;
    }
    const dest = weightedLeastConnection(dests);
    if (!dest) return undefined;
    // ip_vs_lblcr_new (no entry for this address yet)
    if (this.table.entries <= LOCALITY_MAX_SIZE) {
      const set: DestSet = { keys: [], lastmod: now };
      insert(set, dest.key, false, now);
      this.table.hash({ addrId, bucket: localityHashKey(addrFold(ctx.vip)), lastuse: now, set });
    }
    return dest;
  }

  /** The member as the kernel's dest struct: current if in the service, else as last seen. */
  private member(key: string, dests: readonly SchedDest[]): { d: SchedDest | undefined; available: boolean } {
    const i = this.index.get(key);
    const d = i === undefined ? undefined : dests[i];
    if (d) return { d, available: true };
    return { d: this.departed.get(key), available: false };
  }

  /** ip_vs_dest_set_min. */
  private setMin(set: DestSet, dests: readonly SchedDest[]): SchedDest | undefined {
    let k = 0;
    let least: SchedDest | undefined;
    let loh = 0;
    for (; k < set.keys.length; k++) {
      const { d, available } = this.member(set.keys[k] ?? '', dests);
      if (!d || d.overloaded) continue;
      if ((d.weight | 0) > 0 && available) {
        least = d;
        loh = connOverheadInt(d);
        break;
      }
    }
    if (!least) return undefined;
    for (k++; k < set.keys.length; k++) {
      const { d, available } = this.member(set.keys[k] ?? '', dests);
      if (!d || d.overloaded) continue;
      const doh = connOverheadInt(d);
      if (loh * (d.weight | 0) > doh * (least.weight | 0) && available) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }

  /** ip_vs_dest_set_max: returns the member's key. */
  private setMax(set: DestSet, dests: readonly SchedDest[]): string | undefined {
    let k = 0;
    let most: SchedDest | undefined;
    let mostKey: string | undefined;
    let moh = 0;
    for (; k < set.keys.length; k++) {
      const key = set.keys[k] ?? '';
      const { d } = this.member(key, dests);
      if (d && (d.weight | 0) > 0) {
        most = d;
        mostKey = key;
        moh = connOverheadInt(d);
        break;
      }
    }
    if (!most) return undefined;
    for (k++; k < set.keys.length; k++) {
      const key = set.keys[k] ?? '';
      const { d } = this.member(key, dests);
      if (!d) continue;
      const doh = connOverheadInt(d);
      if (moh * (d.weight | 0) < doh * (most.weight | 0) && (d.weight | 0) > 0) {
        most = d;
        mostKey = key;
        moh = doh;
      }
    }
    return mostKey;
  }
}

/** ip_vs_dest_set_insert. */
function insert(set: DestSet, key: string, check: boolean, now: number): void {
  if (check && set.keys.includes(key)) return;
  set.keys.unshift(key);
  set.lastmod = now;
}

/** ip_vs_dest_set_erase. */
function erase(set: DestSet, key: string, now: number): void {
  const i = set.keys.indexOf(key);
  if (i < 0) return;
  set.keys.splice(i, 1);
  set.lastmod = now;
}
