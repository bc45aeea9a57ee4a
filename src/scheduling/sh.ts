/**
 * sh: Source Hashing (net/netfilter/ipvs/ip_vs_sh.c), with ipvsadm's default flags (neither
 * sh-fallback nor sh-port).
 *
 * A 256-bucket table (IP_VS_SH_TAB_BITS = 8) is filled by ip_vs_sh_reassign (on add_dest,
 * del_dest and upd_dest): walking the list in order, each destination takes `weight`
 * consecutive buckets (one when its weight is 0, because the test is ++count >= weight), wrapping
 * round the list until all 256 are filled. A packet goes to bucket
 * hash_32(ntohs(port) + ntohl(saddr), 8) with port 0 (no sh-port flag), saddr being the client
 * address (IPv6: XOR-folded). If that destination has weight <= 0 or is overloaded there is no
 * fallback (IP_VS_SVC_F_SCHED_SH_FALLBACK is off): the connection is refused.
 */
import { ListScheduler, addrFold, hash32 } from './common.js';
import type { SchedContext, SchedDest } from './scheduler.js';

export const IP_VS_SH_TAB_BITS = 8;
export const IP_VS_SH_TAB_SIZE = 1 << IP_VS_SH_TAB_BITS;
const IP_VS_SH_TAB_MASK = IP_VS_SH_TAB_SIZE - 1;

/** ip_vs_sh_hashkey(af, addr, port, offset). */
export function shHashKey(addr: string, port = 0, offset = 0): number {
  return (offset + hash32(((port & 0xffff) + addrFold(addr)) >>> 0, IP_VS_SH_TAB_BITS)) & IP_VS_SH_TAB_MASK;
}

export class SourceHashingScheduler extends ListScheduler {
  readonly name = 'sh' as const;
  /** Bucket → index in the current list; -1 is an empty bucket. */
  private readonly buckets = new Int32Array(IP_VS_SH_TAB_SIZE).fill(-1);

  /** For tests and the tracer: the key in each bucket. */
  table(dests: readonly SchedDest[]): (string | undefined)[] {
    return Array.from(this.buckets, (i) => (i < 0 ? undefined : dests[i]?.key));
  }

  protected onUpdate(dests: readonly SchedDest[]): void {
    // ip_vs_sh_reassign
    const n = dests.length;
    let p = 0;
    let count = 0;
    for (let i = 0; i < IP_VS_SH_TAB_SIZE; i++) {
      if (n === 0) {
        this.buckets[i] = -1;
        continue;
      }
      if (p === n) p = 0;
      this.buckets[i] = p;
      // Don't move to the next destination until its weight is filled.
      if (++count >= ((dests[p]?.weight ?? 0) | 0)) {
        p++;
        count = 0;
      }
    }
  }

  protected pick(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined {
    const i = this.buckets[shHashKey(ctx.clientIP)] ?? -1;
    const d = i < 0 ? undefined : dests[i];
    if (!d || (d.weight | 0) <= 0 || d.overloaded) return undefined;
    return d;
  }
}
