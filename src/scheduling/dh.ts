/**
 * dh: Destination Hashing (net/netfilter/ipvs/ip_vs_dh.c).
 *
 * A 256-bucket table (IP_VS_DH_TAB_BITS = 8) is filled by cycling through the list in order,
 * one bucket per destination regardless of weight (ip_vs_dh_reassign, run on add_dest and
 * del_dest; the kernel has no upd_dest hook because weights do not shape the table). A packet
 * goes to bucket hash_32(ntohl(daddr), 8) of the virtual address it was sent to (IPv6: the four
 * words XOR-folded). If that destination has weight <= 0 or is overloaded there is no fallback:
 * the connection is refused.
 */
import { ListScheduler, addrFold, hash32 } from './common.js';
import type { SchedContext, SchedDest } from './scheduler.js';

export const IP_VS_DH_TAB_BITS = 8;
export const IP_VS_DH_TAB_SIZE = 1 << IP_VS_DH_TAB_BITS;

/** ip_vs_dh_hashkey. */
export function dhHashKey(addr: string): number {
  return hash32(addrFold(addr), IP_VS_DH_TAB_BITS);
}

export class DestinationHashingScheduler extends ListScheduler {
  readonly name = 'dh' as const;
  /** Bucket → index in the current list; -1 is an empty bucket. */
  private readonly buckets = new Int32Array(IP_VS_DH_TAB_SIZE).fill(-1);

  /** For tests and the tracer: the key in each bucket. */
  table(dests: readonly SchedDest[]): (string | undefined)[] {
    return Array.from(this.buckets, (i) => (i < 0 ? undefined : dests[i]?.key));
  }

  protected onUpdate(dests: readonly SchedDest[]): void {
    // ip_vs_dh_reassign
    const n = dests.length;
    for (let i = 0; i < IP_VS_DH_TAB_SIZE; i++) this.buckets[i] = n === 0 ? -1 : i % n;
  }

  protected pick(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined {
    const i = this.buckets[dhHashKey(ctx.vip)] ?? -1;
    const d = i < 0 ? undefined : dests[i];
    if (!d || (d.weight | 0) <= 0 || d.overloaded) return undefined;
    return d;
  }
}
