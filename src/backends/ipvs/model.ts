/**
 * IPVS mode's kernel state as data: what render() produces, what the kernel-state parsers read
 * back, and what the diff compares. Pure types; no I/O.
 */
import type { SchedulerName } from '../../core/annotations.js';
import type { ServicePortName } from '../../core/ids.js';
import type { Protocol } from '../../core/objects.js';
import type { KernelRenderOptions } from '../backend.js';
import type { IptablesModel } from '../iptables/model.js';
import type { IpsetType } from './names.js';

/** `-t` / `-u` / `--sctp-service` in ipvsadm. */
export type IpvsProtocol = Protocol;

/** One real server of a virtual server, always in masquerade (NAT) forwarding, as upstream. */
export interface RealServer {
  readonly ip: string;
  readonly port: number;
  /** 0..65535 (ipvsadm's range); 0 takes no new connections. */
  readonly weight: number;
}

export interface VirtualServer {
  readonly protocol: IpvsProtocol;
  readonly ip: string;
  readonly port: number;
  /** A scheduler name; the kernel may still refuse it (module missing). */
  readonly scheduler: string;
  /** ClientIP affinity: `-p <seconds>`; 0 for none. */
  readonly persistence: number;
  /** Scheduler flags (`-b`), e.g. upstream's mh-port for the mh scheduler. */
  readonly flags: readonly string[];
  /** Sorted by ip then port. */
  readonly realServers: readonly RealServer[];
}

/** The model's virtual servers also say which service port they belong to (for per-service errors). */
export interface OwnedVirtualServer extends VirtualServer {
  readonly owner: ServicePortName;
}

export interface IpsetModel {
  readonly name: string;
  readonly type: IpsetType;
  /** `create` options after name and type (upstream's). */
  readonly options: string;
  /** Sorted, deduplicated; entries in the form `ipset save` prints them. */
  readonly entries: readonly string[];
}

export interface IpvsModel {
  /** Sorted by key (virtualServerKey). */
  readonly virtualServers: readonly OwnedVirtualServer[];
  /** Addresses bound to kube-ipvs0 (ClusterIPs, external IPs and LB IPs not already on the node). Sorted. */
  readonly addresses: readonly string[];
  /** Every upstream ipset, in upstream's order, empty ones included. */
  readonly ipsets: readonly IpsetModel[];
  /** KUBE-* chains in nat and filter (constant size; no per-service chains). */
  readonly iptables: IptablesModel;
  /** Service ports left out, with the reason. */
  readonly skipped: ReadonlyMap<ServicePortName, string>;
}

export interface IpvsRenderOptions extends KernelRenderOptions {
  /** --ipvs-scheduler: the scheduler of services without a kproxy.io/scheduler annotation. */
  readonly scheduler: SchedulerName;
  /** `iptables` supports MASQUERADE --random-fully. Default true. */
  readonly randomFully?: boolean;
  /**
   * Every address of this node outside kube-ipvs0 (upstream's nodeAddressSet): an external or
   * LB IP that is already one of them is not bound to kube-ipvs0. Default: nodeIPs.
   */
  readonly localAddresses?: readonly string[];
}

/** "TCP:198.18.0.10:80" ("TCP:[fd00::1]:80" for IPv6): a virtual server's identity. */
export function virtualServerKey(vs: { readonly protocol: string; readonly ip: string; readonly port: number }): string {
  return `${vs.protocol}:${hostPort(vs.ip, vs.port)}`;
}

export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
