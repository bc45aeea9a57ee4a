/**
 * nftables mode's ruleset as data: what render() produces and serialize consumes. Pure types.
 * Everything lives in one table, `kube-proxy`, of family `ip` (IPv4) or `ip6` (IPv6).
 */
import type { ServicePortName } from '../../core/ids.js';
import type { KernelRenderOptions } from '../backend.js';

export type NftFamily = 'ip' | 'ip6';

export interface BaseChainSpec {
  readonly type: 'filter' | 'nat';
  readonly hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  /** Numeric priority, as upstream's tests print it (dstnat = -100, srcnat = 100). */
  readonly priority: number;
}

export interface NftChain {
  readonly name: string;
  /** Present for base chains (attached to a netfilter hook). */
  readonly base?: BaseChainSpec;
  readonly comment?: string;
  /** Rule bodies in order, as written after `add rule <family> kube-proxy <chain> ` (comments included). */
  readonly rules: readonly string[];
}

export interface NftSet {
  readonly name: string;
  readonly kind: 'set' | 'map';
  /** e.g. `ipv4_addr . inet_proto . inet_service : verdict`. */
  readonly type: string;
  readonly flags?: readonly string[];
  readonly timeoutSeconds?: number;
  readonly comment?: string;
}

export interface NftElement {
  /** Key text, e.g. `172.30.0.41 . tcp . 80`; the element's identity within its set. */
  readonly key: string;
  /** Verdict for maps, e.g. `goto service-…`, `drop`. */
  readonly value?: string;
  readonly comment?: string;
}

/** What one service port owns, so a partial sync can rewrite just that. */
export interface ServicePortObjects {
  /** Its chains (service-, local-, external-, firewall-, endpoint-), in declaration order. */
  readonly chains: readonly string[];
  /** Its affinity-* sets. */
  readonly affinitySets: readonly string[];
  /** The chains named in `chains`, in the same order. */
  readonly chainObjects: readonly NftChain[];
  /** The sets named in `affinitySets`, in the same order. */
  readonly setObjects: readonly NftSet[];
}

export interface NftablesModel {
  readonly family: NftFamily;
  readonly table: string;
  /**
   * Every chain (base, top-level, then per service port), in declaration order. A rendered model
   * usually holds no Map of them but a view over its service ports' objects (PortIndexed).
   */
  readonly chains: ReadonlyMap<string, NftChain>;
  /** Every set and map (shared ones first, then affinity sets), in declaration order; a view like `chains`. */
  readonly sets: ReadonlyMap<string, NftSet>;
  /** Elements of the shared sets and maps, in order (affinity sets are filled by the kernel). */
  readonly elements: ReadonlyMap<string, readonly NftElement[]>;
  /**
   * Sets upstream creates and deletes in the same transaction so that they do not exist
   * afterwards, whether they existed before or not (`nodeport-ips` when NodePorts match every
   * local address).
   */
  readonly absentSets: readonly string[];
  readonly servicePorts: ReadonlyMap<ServicePortName, ServicePortObjects>;
  /** Invalid service ports left out, with the reason. */
  readonly skipped: ReadonlyMap<ServicePortName, string>;
  /** Service ports whose Local policy has no local endpoint (sync_proxy_rules_no_local_endpoints_total). */
  readonly noLocalEndpoints: { readonly internal: number; readonly external: number };
}

export interface NftablesRenderOptions extends KernelRenderOptions {
  /** Service CIDRs: traffic to unallocated ClusterIPs in them is dropped (cluster-ips-check). Default none. */
  readonly serviceCIDRs?: readonly string[];
}
