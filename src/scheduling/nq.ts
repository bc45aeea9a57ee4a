/**
 * nq: Never Queue (net/netfilter/ipvs/ip_vs_nq.c).
 *
 * Walks the list skipping overloaded and weight-0 destinations. The first one with
 * activeconns == 0 is returned at once (an idle server never makes a job queue). Otherwise it is
 * sed: keep the destination minimising (activeconns + 1) / weight, replacing `least` only when
 * loh * dw > doh * lw, so the earlier one wins ties. Stateless.
 */
import { expectedDelayOverhead } from './sed.js';
import type { SchedContext, SchedDest, Scheduler } from './scheduler.js';

export class NeverQueueScheduler implements Scheduler {
  readonly name = 'nq' as const;

  update(_dests: readonly SchedDest[]): void {
    // The kernel's nq has no add/del/upd hooks.
  }

  schedule(dests: readonly SchedDest[], _ctx: SchedContext): SchedDest | undefined {
    let least: SchedDest | undefined;
    let loh = 0;
    for (const d of dests) {
      if (d.overloaded || (d.weight | 0) === 0) continue;
      const doh = expectedDelayOverhead(d);
      if ((d.activeConns | 0) === 0) return d;
      if (!least || loh * (d.weight | 0) > doh * (least.weight | 0)) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }
}
