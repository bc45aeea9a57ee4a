import type { Snapshot } from '../core/snapshot.js';
import type { Text } from '../core/text.js';

export const PROXY_MODES = ['userspace', 'iptables', 'ipvs', 'nftables'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];

/**
 * A backend programs one snapshot at a time. `sync` either fully succeeds or throws, leaving
 * what was installed before in place; the proxier then retries with a full snapshot.
 */
export interface Backend {
  readonly mode: ProxyMode;
  sync(snapshot: Snapshot): Promise<void>;
  /** Idempotent: stops serving, drains within its bound, removes what it installed. */
  close(): Promise<void>;
  /** Kernel modes: the exact input a full sync of this snapshot applies (`--dry-run`). */
  dryRun?(snapshot: Snapshot): Text;
}

/** What shapes a kernel mode's rules, common to every kernel mode (from flags/config). */
export interface KernelRenderOptions {
  /** This node's name (endpoints with this nodeName are local). */
  readonly nodeName: string;
  /** This family's node IPs that accept NodePorts (already filtered by --nodeport-addresses). */
  readonly nodeIPs: readonly string[];
  /** --nodeport-addresses CIDRs; empty means every local address. */
  readonly nodePortAddresses: readonly string[];
  /** --cluster-cidr, for local-traffic detection; empty disables it. */
  readonly clusterCIDRs: readonly string[];
  readonly masqueradeAll: boolean;
  /** --iptables-masquerade-bit, default 14 → mark 0x4000. */
  readonly masqueradeBit: number;
  readonly family: 'IPv4' | 'IPv6';
  /**
   * The node's primary IP of this family (upstream's nodeIP): a load balancer source range that
   * contains it also admits traffic from the node itself. Default: the first non-loopback nodeIP.
   */
  readonly primaryNodeIP?: string;
}
