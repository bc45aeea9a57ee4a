/**
 * iptables mode's rules as data: what render() produces and serialize()/apply consume.
 * Pure types; no I/O (the views' classes are in table-chains.ts and ../port-cache.ts).
 */
import type { ServicePortName } from '../../core/ids.js';
import type { KernelRenderOptions } from '../backend.js';
import type { SortedPorts } from '../port-cache.js';
import type { TableChains } from './table-chains.js';

export type TableName = 'filter' | 'nat';

/** One table's chains, in the order they are declared, each with its rules in order. */
export interface TableModel {
  /**
   * Chain name → rule lines, each the complete `-A <chain> ...` line exactly as upstream
   * kube-proxy writes it into iptables-restore input (e.g. `-s 10.180.0.1`, not `/32`;
   * comments with spaces in double quotes). iptables-save prints the same rules normalized.
   * Order: the top-level KUBE-* chains first, then each service port's chains.
   */
  readonly chains: ReadonlyMap<string, readonly string[]>;
}

/** The per-service-port chains one service port owns, by table (in declaration order). */
export interface ServiceChains {
  readonly filter: readonly string[];
  readonly nat: readonly string[];
}

export interface IptablesModel {
  readonly filter: TableModel;
  readonly nat: TableModel;
  /**
   * The per-service-port chains (KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW-, KUBE-SEP-) each
   * service port owns, by table. Partial syncs rewrite only the chains of changed ports.
   * Every programmed service port has an entry (possibly with no chains, e.g. no endpoints).
   */
  readonly serviceChains: ReadonlyMap<ServicePortName, ServiceChains>;
  /**
   * Invalid service ports render left out, with the reason (for a log line and a metric).
   * Ports of the other IP family are not listed: they are simply not this family's business.
   */
  readonly skipped: ReadonlyMap<ServicePortName, string>;
  /** More than 1000 endpoints in total: per-endpoint comments are left out (as upstream). */
  readonly largeClusterMode: boolean;
  /** Service ports whose Local policy has no local endpoint (sync_proxy_rules_no_local_endpoints_total). */
  readonly noLocalEndpoints: { readonly internal: number; readonly external: number };
}

/**
 * The model IptablesRenderer makes (IPVS mode makes plain Maps for its few chains): its tables
 * and service ports are views over the render's pieces, which a partial sync walks by port.
 */
export interface RenderedIptablesModel extends IptablesModel {
  readonly filter: { readonly chains: TableChains };
  readonly nat: { readonly chains: TableChains };
  readonly serviceChains: SortedPorts<ServiceChains>;
}

/** Options that shape the rules (from flags/config). */
export interface IptablesRenderOptions extends KernelRenderOptions {
  /**
   * Upstream's --iptables-localhost-nodeports (default true upstream, false in kproxy): NodePorts
   * answer on 127.0.0.0/8 too. Needs net.ipv4.conf.all.route_localnet=1 (the apply step's job).
   * Only for IPv4, and only when --nodeport-addresses includes loopback (as upstream).
   */
  readonly localhostNodePorts: boolean;
  /** `iptables` supports MASQUERADE --random-fully (1.6.2+). Default true. */
  readonly randomFully?: boolean;
  /** The nfacct counters exist (xt_nfacct): add upstream's counting matches. Default false. */
  readonly nfacct?: boolean;
  /** net.netfilter.nf_conntrack_tcp_be_liberal is set: upstream then omits the INVALID DROP rule. Default false. */
  readonly conntrackTCPLiberal?: boolean;
}
