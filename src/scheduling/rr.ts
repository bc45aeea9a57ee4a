/**
 * rr: Round-Robin (net/netfilter/ipvs/ip_vs_rr.c).
 *
 * The kernel keeps svc->sched_data pointing at the list node of the last chosen destination (or
 * at the list head). Each call walks forward from there, wrapping once through the head, and
 * takes the first destination that is not IP_VS_DEST_F_OVERLOAD and has weight > 0; the walk
 * ends after re-checking the last chosen one. On del_dest of the destination the cursor points
 * at, the cursor moves to the entry before it (p->next->prev), so the next call continues with
 * the entry that followed the deleted one.
 */
import { ListScheduler, type ListChange } from './common.js';
import type { SchedContext, SchedDest } from './scheduler.js';

export class RoundRobinScheduler extends ListScheduler {
  readonly name = 'rr' as const;
  /** Index in the current list of the cursor destination; -1 is the list head. */
  private cursor = -1;
  private cursorKey: string | undefined;

  protected onUpdate(dests: readonly SchedDest[], change: ListChange): void {
    if (this.cursorKey === undefined) {
      this.cursor = -1;
      return;
    }
    const index = new Map<string, number>();
    dests.forEach((d, i) => index.set(d.key, i));
    const at = index.get(this.cursorKey);
    if (at !== undefined) {
      this.cursor = at;
      return;
    }
    // ip_vs_rr_del_dest: the cursor's destination was unlinked; it moves to the node before it.
    // Additions (linked at the head) are taken to happen before deletions, as kube-proxy syncs,
    // so "before it" is the new-list entry just before the slot it occupied: the slot precedes
    // the nearest surviving successor from the old list (or is the list end if none survives).
    const prev = change.previousKeys;
    let successor: number | undefined;
    for (let i = prev.indexOf(this.cursorKey) + 1; i < prev.length && successor === undefined; i++) {
      successor = index.get(prev[i] ?? '');
    }
    this.cursor = (successor ?? dests.length) - 1;
    this.cursorKey = this.cursor >= 0 ? dests[this.cursor]?.key : undefined;
  }

  protected pick(dests: readonly SchedDest[], _ctx: SchedContext): SchedDest | undefined {
    const n = dests.length;
    for (let k = 1; k <= n; k++) {
      const i = (this.cursor + k) % n;
      const d = dests[i];
      if (d && !d.overloaded && d.weight > 0) {
        this.cursor = i;
        this.cursorKey = d.key;
        return d;
      }
    }
    return undefined;
  }
}
