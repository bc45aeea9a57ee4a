/**
 * lblc: Locality-Based Least-Connection (net/netfilter/ipvs/ip_vs_lblc.c).
 *
 * A cache maps each destination (virtual) address, ctx.vip, to one real server:
 * - On a hit, the entry's lastuse is refreshed and its server is used if it is still in the
 *   service (IP_VS_DEST_CF_AVAILABLE), has weight > 0 and is not "overloaded" in lblc's sense:
 *   activeconns > weight while some server of the service has activeconns * 2 < weight.
 *   The IP_VS_DEST_F_OVERLOAD flag is NOT consulted on this path (the kernel does not).
 * - Otherwise the weighted-least-connection server (wlc's loop, which does skip
 *   IP_VS_DEST_F_OVERLOAD) is chosen and cached: an entry pointing elsewhere is replaced; a new
 *   entry is not created while the table counter exceeds max_size (16384).
 * - Entries are dropped only by the garbage-collection timer (see locality.ts): unused for
 *   sysctl lblc_expiration (24 h by default) at a full check, or for 6 min when the table is
 *   over max_size.
 *
 * The kernel has no add/del/upd hooks for lblc: entries keep referring to a removed server (the
 * kernel holds it in the trash), which is unavailable until a server with the same address and
 * port is added again (the kernel revives the same dest from the trash). Entries are kept by key,
 * which has exactly that effect.
 *
 * Kernel quirk reproduced: ip_vs_lblc_new replaces an entry without decrementing tbl->entries,
 * so the counter (which gates new entries and the over-size collection) drifts upward by one
 * per replacement until a collection pass decrements it for entries actually freed.
 */
import { ListScheduler, addrFold, addrIdentity } from './common.js';
import {
  DEFAULT_EXPIRATION_MS, LOCALITY_MAX_SIZE, LocalityTable, isLocalityOverloaded, localityHashKey, type LocalityEntry,
} from './locality.js';
import type { NowFn, SchedContext, SchedDest } from './scheduler.js';
import { weightedLeastConnection } from './wlc.js';

export interface LblcOptions {
  readonly now: NowFn;
  /** sysctl net.ipv4.vs.lblc_expiration in ms; default 24 h. */
  readonly expirationMs?: number;
}

interface LblcEntry extends LocalityEntry {
  readonly destKey: string;
}

export class LocalityLeastConnectionScheduler extends ListScheduler {
  readonly name = 'lblc' as const;
  private readonly now: NowFn;
  private readonly table: LocalityTable<LblcEntry>;
  private index = new Map<string, number>();

  constructor(options: LblcOptions) {
    super();
    this.now = options.now;
    this.table = new LocalityTable<LblcEntry>(this.now(), options.expirationMs ?? DEFAULT_EXPIRATION_MS);
  }

  /** For tests and the tracer: the cache, as (address identity, server key, lastuse). */
  cache(): { addr: string; dest: string; lastuse: number }[] {
    return this.table.all().map((e) => ({ addr: e.addrId, dest: e.destKey, lastuse: e.lastuse }));
  }

  /** The kernel's tbl->entries counter. */
  get entryCounter(): number {
    return this.table.entries;
  }

  /** Runs the garbage-collection timer firings due by now (scheduling does this too). */
  expire(): void {
    this.table.runTimers(this.now());
  }

  protected onUpdate(dests: readonly SchedDest[]): void {
    this.table.runTimers(this.now());
    this.index = new Map(dests.map((d, i) => [d.key, i]));
  }

  protected pick(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined {
    const now = this.now();
    this.table.runTimers(now);
    const addrId = addrIdentity(ctx.vip);
    const en = this.table.get(addrId);
    if (en) {
      en.lastuse = now;
      const i = this.index.get(en.destKey);
      const d = i === undefined ? undefined : dests[i];
      if (d && (d.weight | 0) > 0 && !isLocalityOverloaded(d, dests)) return d;
    }
    const dest = weightedLeastConnection(dests);
    if (!dest) return undefined;
    this.newEntry(addrId, ctx.vip, dest, now);
    return dest;
  }

  /** ip_vs_lblc_new. */
  private newEntry(addrId: string, addr: string, dest: SchedDest, now: number): void {
    const en = this.table.get(addrId);
    if (en) {
      if (en.destKey === dest.key) return;
      this.table.unlink(en); // ip_vs_lblc_del: no atomic_dec(&tbl->entries) here
    }
    if (this.table.entries > LOCALITY_MAX_SIZE) return;
    this.table.hash({ addrId, bucket: localityHashKey(addrFold(addr)), lastuse: now, destKey: dest.key });
  }
}
