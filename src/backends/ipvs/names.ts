/**
 * IPVS mode's names, exactly as upstream kube-proxy spells them (pkg/proxy/ipvs): the dummy
 * interface, the ipsets (name, type, the comment its iptables rule carries), the chains, the
 * sysctls. Pure.
 */

/** The dummy interface every service address is bound to (so the kernel accepts packets for it). */
export const DUMMY_DEVICE = 'kube-ipvs0';

export type IpsetType = 'hash:ip' | 'hash:ip,port' | 'hash:ip,port,ip' | 'hash:ip,port,net' | 'bitmap:port';

export interface IpsetInfo {
  readonly name: string;
  readonly type: IpsetType;
  /** Upstream's comment; its iptables rules carry it in double quotes. */
  readonly comment: string;
}

function set(name: string, type: IpsetType, comment: string): IpsetInfo {
  return Object.freeze({ name, type, comment });
}

export const KUBE_LOOP_BACK = set('KUBE-LOOP-BACK', 'hash:ip,port,ip', 'Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose');
export const KUBE_CLUSTER_IP = set('KUBE-CLUSTER-IP', 'hash:ip,port', 'Kubernetes service cluster ip + port for masquerade purpose');
export const KUBE_EXTERNAL_IP = set('KUBE-EXTERNAL-IP', 'hash:ip,port', 'Kubernetes service external ip + port for masquerade and filter purpose');
export const KUBE_EXTERNAL_IP_LOCAL = set('KUBE-EXTERNAL-IP-LOCAL', 'hash:ip,port', 'Kubernetes service external ip + port with externalTrafficPolicy=local');
export const KUBE_LOAD_BALANCER = set('KUBE-LOAD-BALANCER', 'hash:ip,port', 'Kubernetes service lb portal');
export const KUBE_LOAD_BALANCER_FW = set('KUBE-LOAD-BALANCER-FW', 'hash:ip,port', 'Kubernetes service load balancer ip + port for load balancer with sourceRange');
export const KUBE_LOAD_BALANCER_LOCAL = set('KUBE-LOAD-BALANCER-LOCAL', 'hash:ip,port', 'Kubernetes service load balancer ip + port with externalTrafficPolicy=local');
export const KUBE_LOAD_BALANCER_SOURCE_IP = set('KUBE-LOAD-BALANCER-SOURCE-IP', 'hash:ip,port,ip', 'Kubernetes service load balancer ip + port + source IP for packet filter purpose');
export const KUBE_LOAD_BALANCER_SOURCE_CIDR = set('KUBE-LOAD-BALANCER-SOURCE-CIDR', 'hash:ip,port,net', 'Kubernetes service load balancer ip + port + source cidr for packet filter purpose');
export const KUBE_NODE_PORT_TCP = set('KUBE-NODE-PORT-TCP', 'bitmap:port', 'Kubernetes nodeport TCP port for masquerade purpose');
export const KUBE_NODE_PORT_LOCAL_TCP = set('KUBE-NODE-PORT-LOCAL-TCP', 'bitmap:port', 'Kubernetes nodeport TCP port with externalTrafficPolicy=local');
export const KUBE_NODE_PORT_UDP = set('KUBE-NODE-PORT-UDP', 'bitmap:port', 'Kubernetes nodeport UDP port for masquerade purpose');
export const KUBE_NODE_PORT_LOCAL_UDP = set('KUBE-NODE-PORT-LOCAL-UDP', 'bitmap:port', 'Kubernetes nodeport UDP port with externalTrafficPolicy=local');
export const KUBE_NODE_PORT_SCTP = set('KUBE-NODE-PORT-SCTP-HASH', 'hash:ip,port', "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'");
export const KUBE_NODE_PORT_LOCAL_SCTP = set('KUBE-NODE-PORT-LOCAL-SCTP-HASH', 'hash:ip,port', "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'");
export const KUBE_HEALTH_CHECK_NODE_PORT = set('KUBE-HEALTH-CHECK-NODE-PORT', 'bitmap:port', 'Kubernetes health check node port');
export const KUBE_IPVS_IPS = set('KUBE-IPVS-IPS', 'hash:ip', 'Addresses on the ipvs interface');

/** Upstream's ipsetInfo, in its order (the order `ipset restore` creates them). */
export const IPSETS: readonly IpsetInfo[] = Object.freeze([
  KUBE_LOOP_BACK, KUBE_CLUSTER_IP, KUBE_EXTERNAL_IP, KUBE_EXTERNAL_IP_LOCAL, KUBE_LOAD_BALANCER, KUBE_LOAD_BALANCER_FW,
  KUBE_LOAD_BALANCER_LOCAL, KUBE_LOAD_BALANCER_SOURCE_IP, KUBE_LOAD_BALANCER_SOURCE_CIDR, KUBE_NODE_PORT_TCP,
  KUBE_NODE_PORT_LOCAL_TCP, KUBE_NODE_PORT_UDP, KUBE_NODE_PORT_LOCAL_UDP, KUBE_NODE_PORT_SCTP, KUBE_NODE_PORT_LOCAL_SCTP,
  KUBE_HEALTH_CHECK_NODE_PORT, KUBE_IPVS_IPS,
]);

export const IPSET_NAMES: ReadonlySet<string> = new Set(IPSETS.map((s) => s.name));

/**
 * The `create` arguments upstream's ipset runner passes (after name and type): hash sets get
 * family/hashsize/maxelem, bitmap:port sets the whole port range. `ipset save` adds
 * bucketsize/initval, which the parser ignores.
 */
export function ipsetCreateOptions(type: IpsetType, family: 'IPv4' | 'IPv6'): string {
  if (type === 'bitmap:port') return 'range 0-65535';
  return `family ${family === 'IPv6' ? 'inet6' : 'inet'} hashsize 1024 maxelem 65536`;
}

/** IPv6 sets: upstream renames "KUBE-" to "KUBE-6-" (ipset names are at most 31 characters). */
export function ipsetName(info: IpsetInfo, family: 'IPv4' | 'IPv6'): string {
  if (family === 'IPv4') return info.name;
  return info.name.replace(/^KUBE-/, 'KUBE-6-').slice(0, 31);
}

export const KUBE_SERVICES = 'KUBE-SERVICES';
export const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
export const KUBE_NODE_PORT = 'KUBE-NODE-PORT';
export const KUBE_LOAD_BALANCER_CHAIN = 'KUBE-LOAD-BALANCER';
export const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
export const KUBE_FORWARD = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';
export const KUBE_SOURCE_RANGES_FIREWALL = 'KUBE-SOURCE-RANGES-FIREWALL';
export const KUBE_IPVS_FILTER = 'KUBE-IPVS-FILTER';
export const KUBE_IPVS_OUT_FILTER = 'KUBE-IPVS-OUT-FILTER';

/** Upstream's iptablesChains: what each table's restore declares, in its order. */
export const IPVS_CHAINS: { readonly nat: readonly string[]; readonly filter: readonly string[] } = Object.freeze({
  nat: Object.freeze([KUBE_SERVICES, KUBE_POSTROUTING, KUBE_NODE_PORT, KUBE_LOAD_BALANCER_CHAIN, KUBE_MARK_MASQ]),
  filter: Object.freeze([KUBE_FORWARD, KUBE_NODE_PORT, KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, KUBE_IPVS_FILTER, KUBE_IPVS_OUT_FILTER]),
});

/** The sysctls upstream's IPVS proxier sets at start (path under /proc/sys, value). */
export function ipvsSysctls(strictARP: boolean): readonly (readonly [string, string])[] {
  const out: [string, string][] = [
    ['net/ipv4/vs/conntrack', '1'],
    ['net/ipv4/vs/expire_nodest_conn', '1'],
    ['net/ipv4/vs/expire_quiescent_template', '1'],
    ['net/ipv4/ip_forward', '1'],
  ];
  if (strictARP) out.push(['net/ipv4/conf/all/arp_ignore', '1'], ['net/ipv4/conf/all/arp_announce', '2']);
  return out;
}
