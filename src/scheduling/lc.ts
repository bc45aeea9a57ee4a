/**
 * lc: Least-Connection (net/netfilter/ipvs/ip_vs_lc.c).
 *
 * Walks the list, skipping destinations that are overloaded or have weight 0, and keeps the one
 * with the smallest ip_vs_dest_conn_overhead() = (activeconns << 8) + inactconns (unsigned). The
 * comparison is strict (doh < loh), so the first in list order wins ties. Stateless.
 */
import { connOverheadU32 } from './common.js';
import type { SchedContext, SchedDest, Scheduler } from './scheduler.js';

export class LeastConnectionScheduler implements Scheduler {
  readonly name = 'lc' as const;

  update(_dests: readonly SchedDest[]): void {
    // The kernel's lc has no add/del/upd hooks.
  }

  schedule(dests: readonly SchedDest[], _ctx: SchedContext): SchedDest | undefined {
    let least: SchedDest | undefined;
    let loh = 0;
    for (const d of dests) {
      if (d.overloaded || (d.weight | 0) === 0) continue;
      const doh = connOverheadU32(d);
      if (!least || doh < loh) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }
}
