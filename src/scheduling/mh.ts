/**
 * mh: Maglev Hashing (net/netfilter/ipvs/ip_vs_mh.c), with ipvsadm's default flags (neither
 * mh-fallback nor mh-port).
 *
 * Table size: primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] with the Kconfig default index 12, i.e.
 * 4093 slots (251 is index 8); IP_VS_MH_TAB_BITS = index / 2 = 6.
 *
 * Hashing: hash1/hash2 are fixed hsiphash keys (generate_hash_secret: {2654435761, 2654435761}
 * and {2654446892, 2654446892}); ip_vs_mh_hashkey(addr, port, key, offset) is
 * hsiphash(u32 v = offset + ntohs(port) + ntohl(addr_fold)) with the 64-bit kernel's hsiphash
 * (SipHash-1-3, see siphash.ts).
 *
 * Populate (on every add_dest, del_dest, upd_dest): each destination gets
 * offset = hash(addr, dest port, hash1) % size, skip = hash(addr, dest port, hash2) % (size-1) + 1,
 * and turns = ((last_weight / gcd) >> rshift) || (last_weight != 0), where gcd is over the
 * positive last_weights and rshift = max(0, fls(max_last_weight / gcd) - IP_VS_MH_TAB_BITS).
 * Rounds walk the list; each destination with turns >= 1 claims `turns` slots, each the next
 * free one in its permutation (offset, offset+skip, ... mod size), until all slots are taken.
 * `last_weight` is the latest non-zero weight (or the weight it was added with), so a quiesced
 * destination (weight set to 0) keeps its slots while one added with weight 0 gets none.
 *
 * Schedule: slot hash(client address, port 0, hash1) % size; no destination, weight <= 0 or
 * overloaded → refused (no fallback).
 */
import { ListScheduler, addrFold, gcd, type ListChange } from './common.js';
import { SipKey, hsiphashU32 } from './siphash.js';
import type { SchedContext, SchedDest } from './scheduler.js';

/** Available prime table sizes, indexed by CONFIG_IP_VS_MH_TAB_INDEX - 8. */
export const MH_PRIMES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071] as const;
/** Kconfig default of CONFIG_IP_VS_MH_TAB_INDEX. */
export const DEFAULT_MH_TAB_INDEX = 12;

/** generate_hash_secret (64-bit kernel: unsigned long key words). */
export const MH_HASH1 = new SipKey(2654435761n, 2654435761n);
export const MH_HASH2 = new SipKey(2654446892n, 2654446892n);

/** ip_vs_mh_hashkey. */
export function mhHashKey(addr: string, port: number, key: SipKey, offset = 0): number {
  const v = (offset + (port & 0xffff) + addrFold(addr)) >>> 0;
  return hsiphashU32(v, key);
}

/** fls(): index of the most significant set bit, 1-based; 0 for 0. */
function fls(x: number): number {
  return x === 0 ? 0 : 32 - Math.clz32(x);
}

export interface MhOptions {
  /** CONFIG_IP_VS_MH_TAB_INDEX, 8..17; default 12 (4093 slots). */
  readonly tabIndex?: number;
}

export class MaglevHashingScheduler extends ListScheduler {
  readonly name = 'mh' as const;
  readonly tableSize: number;
  private readonly tabBits: number;
  /** Slot → key of the destination in it; undefined for an empty slot. */
  private lookup: (string | undefined)[];
  /** dest->last_weight by key. */
  private readonly lastWeight = new Map<string, number>();
  /** Key → index in the current list. */
  private index = new Map<string, number>();

  constructor(options: MhOptions = {}) {
    super();
    const tabIndex = options.tabIndex ?? DEFAULT_MH_TAB_INDEX;
    const size = MH_PRIMES[tabIndex - 8];
    if (size === undefined || !Number.isInteger(tabIndex)) throw new RangeError(`mh: table index must be 8..17, got ${tabIndex}`);
    this.tableSize = size;
    this.tabBits = Math.trunc(tabIndex / 2);
    this.lookup = new Array<string | undefined>(size).fill(undefined);
  }

  /** For tests and the tracer: the key in each slot. */
  table(): readonly (string | undefined)[] {
    return this.lookup;
  }

  protected onUpdate(dests: readonly SchedDest[], change: ListChange): void {
    // __ip_vs_update_dest: "keep the last_weight with latest non-0 weight".
    for (const d of change.removed) this.lastWeight.delete(d.key);
    for (const d of dests) {
      if (!this.lastWeight.has(d.key) || d.weight !== 0) this.lastWeight.set(d.key, d.weight | 0);
    }
    this.index = new Map(dests.map((d, i) => [d.key, i]));
    if (change.added.length + change.removed.length + change.reweighted.length === 0) return;
    this.reassign(dests);
  }

  /** ip_vs_mh_dest_changed → ip_vs_mh_reassign (permutate + populate). */
  private reassign(dests: readonly SchedDest[]): void {
    const size = this.tableSize;
    if (dests.length > size) return; // -EINVAL: the old table stays
    const lws = dests.map((d) => this.lastWeight.get(d.key) ?? 0);
    // ip_vs_mh_gcd_weight and ip_vs_mh_shift_weight
    let g = 0;
    for (const w of lws) if (w > 0) g = g > 0 ? gcd(w, g) : w;
    if (g < 1) {
      this.lookup = new Array<string | undefined>(size).fill(undefined); // ip_vs_mh_reset
      return;
    }
    let maxW = 0;
    for (const w of lws) if (w > maxW) maxW = w;
    const shift = fls(Math.trunc(maxW / g)) - this.tabBits;
    const rshift = shift >= 0 ? shift : 0;

    // ip_vs_mh_permutate
    const perm: number[] = [];
    const skip: number[] = [];
    const turns: number[] = [];
    dests.forEach((d, i) => {
      const offset = mhHashKey(d.ip, d.port, MH_HASH1) % size;
      skip.push((mhHashKey(d.ip, d.port, MH_HASH2) % (size - 1)) + 1);
      perm.push(offset);
      const lw = lws[i] ?? 0;
      const t = Math.trunc(lw / g) >> rshift;
      turns.push(t !== 0 ? t : lw !== 0 ? 1 : 0);
    });

    // ip_vs_mh_populate: every slot is overwritten, since all of them get filled.
    const taken = new Uint8Array(size);
    const next = this.lookup.slice();
    let n = 0;
    let dtCount = 0;
    fill: while (n < size) {
      for (let p = 0; p < dests.length; ) {
        const t = turns[p] ?? 0;
        if (t < 1) {
          p++;
          continue;
        }
        let c = perm[p] ?? 0;
        while (taken[c]) {
          c += skip[p] ?? 1;
          if (c >= size) c -= size;
        }
        perm[p] = c;
        taken[c] = 1;
        next[c] = dests[p]?.key;
        if (++n === size) break fill;
        if (++dtCount >= t) {
          dtCount = 0;
          p++;
        }
      }
    }
    this.lookup = next;
  }

  protected pick(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined {
    const key = this.lookup[mhHashKey(ctx.clientIP, 0, MH_HASH1) % this.tableSize];
    if (key === undefined) return undefined;
    const i = this.index.get(key);
    const d = i === undefined ? undefined : dests[i];
    if (!d || (d.weight | 0) <= 0 || d.overloaded) return undefined;
    return d;
  }
}
