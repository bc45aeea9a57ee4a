/**
 * wrr: Weighted Round-Robin (net/netfilter/ipvs/ip_vs_wrr.c).
 *
 * State (struct ip_vs_wrr_mark): cl, the current position (a destination or the list head);
 * cw, the current weight; mw, the maximum weight reduced by (di - 1); di, the gcd of the
 * positive weights. Each pass walks the list from cl and takes the first destination that is not
 * overloaded and whose weight >= cw; at the end of the list cw drops by di, and when it reaches 0
 * it wraps back to mw. With weights 4,3,2 in steady state this yields A A B A B C A B C.
 *
 * The kernel calls ip_vs_wrr_dest_changed on every add_dest, del_dest and upd_dest: cl goes back
 * to the head, di and mw are recomputed, and cw is kept (clamped to mw, reset when 0, or
 * rounded to a multiple of di plus 1). Our `update()` gets the whole new list at once, so it
 * replays the kernel's calls one by one over the intermediate lists, in this order:
 * weight updates (new-list order), additions (reverse new-list order, since the kernel links
 * each new destination at the head, so the first in the list was added last), deletions
 * (old-list order). The order only matters when several weights change at once; it is the
 * order kube-proxy uses (add/update endpoints, then delete stale ones).
 *
 * A freshly created scheduler is the kernel's init_service on an empty service (cw = mw = 0);
 * destinations then arrive through add_dest. Pass `initialDests` to model init_service on a
 * service that already has destinations (ipvsadm -E switching an existing service to wrr),
 * which starts with cw = mw.
 */
import { ListScheduler, gcd, type ListChange } from './common.js';
import type { SchedContext, SchedDest } from './scheduler.js';

export interface WrrOptions {
  readonly initialDests?: readonly SchedDest[];
}

export class WeightedRoundRobinScheduler extends ListScheduler {
  readonly name = 'wrr' as const;
  /** mark->cl: index in the current list, -1 for the list head. */
  private cl = -1;
  private clKey: string | undefined;
  /** mark->cw, mark->mw, mark->di. */
  private cw: number;
  private mw: number;
  private di: number;

  constructor(options: WrrOptions = {}) {
    super();
    const initial = options.initialDests ?? [];
    const weights = new Map(initial.map((d) => [d.key, d.weight | 0]));
    // ip_vs_wrr_init_svc
    this.di = gcdWeight(weights);
    this.mw = maxWeight(weights) - (this.di - 1);
    this.cw = this.mw;
    if (initial.length > 0) this.tracker.commit(initial);
  }

  /** For tests and the tracer: the kernel's mark fields. */
  get mark(): { readonly cl: string | undefined; readonly cw: number; readonly mw: number; readonly di: number } {
    return { cl: this.clKey, cw: this.cw, mw: this.mw, di: this.di };
  }

  protected onUpdate(dests: readonly SchedDest[], change: ListChange): void {
    const weights = new Map(change.previousWeights);
    let calls = 0;
    const changed = (): void => {
      calls++;
      this.destChanged(weights);
    };
    for (const d of change.reweighted) {
      weights.set(d.key, d.weight | 0);
      changed();
    }
    for (let i = change.added.length - 1; i >= 0; i--) {
      const d = change.added[i];
      if (!d) continue;
      weights.set(d.key, d.weight | 0);
      changed();
    }
    for (const d of change.removed) {
      weights.delete(d.key);
      changed();
    }
    if (calls > 0 || this.clKey === undefined) {
      this.cl = -1;
      this.clKey = undefined;
      return;
    }
    // Same destinations (only reordered): keep pointing at the same one.
    const at = dests.findIndex((d) => d.key === this.clKey);
    this.cl = at;
    if (at < 0) this.clKey = undefined;
  }

  /** ip_vs_wrr_dest_changed. */
  private destChanged(weights: ReadonlyMap<string, number>): void {
    this.di = gcdWeight(weights);
    this.mw = maxWeight(weights) - (this.di - 1);
    if (this.cw > this.mw || this.cw === 0) this.cw = this.mw;
    else if (this.di > 1) this.cw = Math.trunc(this.cw / this.di) * this.di + 1;
  }

  protected pick(dests: readonly SchedDest[], _ctx: SchedContext): SchedDest | undefined {
    const n = dests.length;
    let pos = this.cl;
    if (this.mw === 0) return undefined; // err_noavail: cl unchanged
    const last = pos;
    let stop = -2; // NULL
    let lastPass = false;
    let restarted = false;
    for (;;) {
      for (let i = pos + 1; i < n; i++) {
        const d = dests[i];
        if (!d) continue;
        if (!d.overloaded && (d.weight | 0) >= this.cw) {
          this.cl = i;
          this.clKey = d.key;
          return d;
        }
        if (i === stop) {
          // err_over: mark->cl = dest
          this.cl = i;
          this.clKey = d.key;
          return undefined;
        }
      }
      pos = -1; // the walk ended on the list head
      this.cw -= this.di;
      if (this.cw <= 0) {
        this.cw = this.mw;
        // Stop if the last pass (cw <= di) already covered every destination.
        if (lastPass || last === -1) {
          this.cl = -1;
          this.clKey = undefined;
          return undefined;
        }
        restarted = true;
      }
      lastPass = this.cw <= this.di;
      if (lastPass && restarted && last !== -1) stop = last;
    }
  }
}

/** ip_vs_wrr_gcd_weight: gcd of the positive weights, 1 when there are none. */
function gcdWeight(weights: ReadonlyMap<string, number>): number {
  let g = 0;
  for (const w of weights.values()) {
    if (w > 0) g = g > 0 ? gcd(w, g) : w;
  }
  return g > 0 ? g : 1;
}

/** ip_vs_wrr_max_weight. */
function maxWeight(weights: ReadonlyMap<string, number>): number {
  let m = 0;
  for (const w of weights.values()) if (w > m) m = w;
  return m;
}
