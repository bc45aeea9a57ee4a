/**
 * wlc: Weighted Least-Connection (net/netfilter/ipvs/ip_vs_wlc.c), the IPVS default.
 *
 * The first destination that is not overloaded and has weight > 0 becomes `least`; every later
 * destination that is not overloaded replaces it when loh * dw > doh * lw (64-bit products of
 * the int overheads (activeconns << 8) + inactconns and the weights). Ties keep the earlier one;
 * a later weight-0 destination can never win (0 > doh * lw is false). Stateless.
 */
import { connOverheadInt } from './common.js';
import type { SchedContext, SchedDest, Scheduler } from './scheduler.js';

/**
 * The shared "weighted least-connection over the service list" loop, which lblc and lblcr also
 * use (__ip_vs_lblc_schedule / __ip_vs_lblcr_schedule are the same code).
 */
export function weightedLeastConnection(dests: readonly SchedDest[]): SchedDest | undefined {
  let i = 0;
  let least: SchedDest | undefined;
  let loh = 0;
  for (; i < dests.length; i++) {
    const d = dests[i];
    if (!d || d.overloaded) continue;
    if ((d.weight | 0) > 0) {
      least = d;
      loh = connOverheadInt(d);
      break;
    }
  }
  if (!least) return undefined;
  for (i++; i < dests.length; i++) {
    const d = dests[i];
    if (!d || d.overloaded) continue;
    const doh = connOverheadInt(d);
    // Products stay below 2^31 * 2^16 = 2^47, exact in a double, like the kernel's __s64.
    if (loh * (d.weight | 0) > doh * (least.weight | 0)) {
      least = d;
      loh = doh;
    }
  }
  return least;
}

export class WeightedLeastConnectionScheduler implements Scheduler {
  readonly name = 'wlc' as const;

  update(_dests: readonly SchedDest[]): void {
    // The kernel's wlc has no add/del/upd hooks.
  }

  schedule(dests: readonly SchedDest[], _ctx: SchedContext): SchedDest | undefined {
    return weightedLeastConnection(dests);
  }
}
