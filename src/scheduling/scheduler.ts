/**
 * The IPVS scheduler contract, shared by userspace mode (which uses the schedulers for real)
 * and by the tracer (which shows their choices). Each scheduler reproduces the Linux kernel's
 * selection rules (net/netfilter/ipvs/ip_vs_<name>.c) on the same inputs.
 */
import type { Protocol } from '../core/objects.js';
import type { SchedulerName } from '../core/annotations.js';

/** A real server as the kernel scheduler sees it. The owner mutates the counters. */
export interface SchedDest {
  /** "ip:port" ("[ip]:port" for IPv6): identity across updates. */
  readonly key: string;
  readonly ip: string;
  readonly port: number;
  /** 0..65535; 0 takes no new connections (quiesced), as in IPVS. */
  readonly weight: number;
  /** Kernel activeconns: for kproxy, open TCP connections relayed to this endpoint. */
  readonly activeConns: number;
  /** Kernel inactconns: for kproxy, live UDP flows to this endpoint. */
  readonly inactiveConns: number;
  /**
   * Kernel IP_VS_DEST_F_OVERLOAD: the scheduler must pass over this destination. kproxy sets it
   * for an endpoint in its failure cool-down.
   */
  readonly overloaded: boolean;
}

/** What the kernel knows about the packet that opens a new connection. */
export interface SchedContext {
  readonly clientIP: string;
  readonly clientPort: number;
  /** The virtual service address the packet was sent to (the kernel's iph->daddr). */
  readonly vip: string;
  readonly vport: number;
  readonly protocol: Protocol;
}

export interface Scheduler {
  readonly name: SchedulerName;
  /**
   * The destination list changed (kernel: add_dest/upd_dest/del_dest → the scheduler's
   * update hook). `dests` is the complete new list in kernel-list order (the kernel links an
   * added destination at the head of the list; `kernelListOrder` in ./common.ts builds that
   * order). Schedulers compare it with the previous list by `key` to replay the kernel's hooks.
   * `schedule()` also re-syncs by itself when handed a list whose keys or weights differ.
   */
  update(dests: readonly SchedDest[]): void;
  /** Picks the destination for a new connection; undefined when none is available. */
  schedule(dests: readonly SchedDest[], ctx: SchedContext): SchedDest | undefined;
}

/** Milliseconds, monotonic; injected so tests drive time (lblc/lblcr expiry). */
export type NowFn = () => number;
