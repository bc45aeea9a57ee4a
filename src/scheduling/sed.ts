/**
 * sed: Shortest Expected Delay (net/netfilter/ipvs/ip_vs_sed.c).
 *
 * Like wlc but the overhead is activeconns + 1 (inactive connections are ignored): the first
 * destination that is not overloaded and has weight > 0 starts as `least`; each later one that
 * is not overloaded replaces it when loh * dw > doh * lw. Ties keep the earlier one. Stateless.
 */
import type { SchedContext, SchedDest, Scheduler } from './scheduler.js';

/** ip_vs_sed_dest_overhead / ip_vs_nq_dest_overhead: activeconns + 1 (int). */
export function expectedDelayOverhead(d: SchedDest): number {
  return ((d.activeConns | 0) + 1) | 0;
}

export class ShortestExpectedDelayScheduler implements Scheduler {
  readonly name = 'sed' as const;

  update(_dests: readonly SchedDest[]): void {
    // The kernel's sed has no add/del/upd hooks.
  }

  schedule(dests: readonly SchedDest[], _ctx: SchedContext): SchedDest | undefined {
    let i = 0;
    let least: SchedDest | undefined;
    let loh = 0;
    for (; i < dests.length; i++) {
      const d = dests[i];
      if (d && !d.overloaded && (d.weight | 0) > 0) {
        least = d;
        loh = expectedDelayOverhead(d);
        break;
      }
    }
    if (!least) return undefined;
    for (i++; i < dests.length; i++) {
      const d = dests[i];
      if (!d || d.overloaded) continue;
      const doh = expectedDelayOverhead(d);
      if (loh * (d.weight | 0) > doh * (least.weight | 0)) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }
}
