/**
 * Renders a snapshot into what upstream kube-proxy's IPVS proxier (pkg/proxy/ipvs/proxier.go,
 * syncProxyRules and writeIptablesRules) programs: virtual servers with their real servers, the
 * addresses on kube-ipvs0, the ipsets' entries, and the constant-size iptables rules matching
 * them. Pure: no node: imports, no clock, no randomness. Service ports are taken in
 * ServicePortName order (upstream walks a Go map), so the output is deterministic.
 */
import { MAX_WEIGHT, isSchedulerName } from '../../core/annotations.js';
import type { Endpoint } from '../../core/endpoints.js';
import type { ServicePortName } from '../../core/ids.js';
import { canonicalIP, parseCIDR, type CIDR } from '../../core/ip.js';
import type { Snapshot } from '../../core/snapshot.js';
import { categorizeEndpoints } from '../../core/traffic-policy.js';
import type { IptablesModel } from '../iptables/model.js';
import { masqueradeMark } from '../iptables/names.js';
import { jumpRule, type JumpRule } from '../iptables/render.js';
import type { IpsetModel, IpvsModel, IpvsRenderOptions, OwnedVirtualServer, RealServer } from './model.js';
import { virtualServerKey } from './model.js';
import { validPort } from '../port-cache.js';
import {
  IPSETS, IPVS_CHAINS, KUBE_CLUSTER_IP, KUBE_EXTERNAL_IP, KUBE_EXTERNAL_IP_LOCAL, KUBE_FORWARD, KUBE_HEALTH_CHECK_NODE_PORT,
  KUBE_IPVS_FILTER, KUBE_IPVS_IPS, KUBE_IPVS_OUT_FILTER, KUBE_LOAD_BALANCER, KUBE_LOAD_BALANCER_CHAIN, KUBE_LOAD_BALANCER_FW,
  KUBE_LOAD_BALANCER_LOCAL, KUBE_LOAD_BALANCER_SOURCE_CIDR, KUBE_LOAD_BALANCER_SOURCE_IP, KUBE_LOOP_BACK, KUBE_MARK_MASQ,
  KUBE_NODE_PORT, KUBE_NODE_PORT_LOCAL_SCTP, KUBE_NODE_PORT_LOCAL_TCP, KUBE_NODE_PORT_LOCAL_UDP, KUBE_NODE_PORT_SCTP,
  KUBE_NODE_PORT_TCP, KUBE_NODE_PORT_UDP, KUBE_POSTROUTING, KUBE_PROXY_FIREWALL, KUBE_SERVICES, KUBE_SOURCE_RANGES_FIREWALL,
  ipsetCreateOptions, ipsetName, type IpsetInfo,
} from './names.js';

/** Upstream's iptablesJumpChain: jumps from the built-in chains, each prepended, no extra matches. */
export const IPVS_JUMP_RULES: readonly JumpRule[] = Object.freeze([
  jumpRule('nat', 'OUTPUT', KUBE_SERVICES, 'kubernetes service portals', []),
  jumpRule('nat', 'PREROUTING', KUBE_SERVICES, 'kubernetes service portals', []),
  jumpRule('nat', 'POSTROUTING', KUBE_POSTROUTING, 'kubernetes postrouting rules', []),
  jumpRule('filter', 'FORWARD', KUBE_FORWARD, 'kubernetes forwarding rules', []),
  jumpRule('filter', 'INPUT', KUBE_NODE_PORT, 'kubernetes health check rules', []),
  jumpRule('filter', 'INPUT', KUBE_PROXY_FIREWALL, 'kube-proxy firewall rules', []),
  jumpRule('filter', 'FORWARD', KUBE_PROXY_FIREWALL, 'kube-proxy firewall rules', []),
  jumpRule('filter', 'INPUT', KUBE_IPVS_FILTER, 'kubernetes ipvs access filter', []),
  jumpRule('filter', 'OUTPUT', KUBE_IPVS_OUT_FILTER, 'kubernetes ipvs access filter', []),
]);

/** Which ipset feeds which rule (upstream's ipsetWithIptablesChain), in its order. */
const IPSET_RULES: readonly { set: IpsetInfo; table: 'nat' | 'filter'; from: string; to: string; match: string; proto: string }[] = [
  { set: KUBE_LOOP_BACK, table: 'nat', from: KUBE_POSTROUTING, to: 'MASQUERADE', match: 'dst,dst,src', proto: '' },
  { set: KUBE_LOAD_BALANCER, table: 'nat', from: KUBE_SERVICES, to: KUBE_LOAD_BALANCER_CHAIN, match: 'dst,dst', proto: '' },
  { set: KUBE_LOAD_BALANCER_LOCAL, table: 'nat', from: KUBE_LOAD_BALANCER_CHAIN, to: 'RETURN', match: 'dst,dst', proto: '' },
  { set: KUBE_NODE_PORT_LOCAL_TCP, table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst', proto: 'tcp' },
  { set: KUBE_NODE_PORT_TCP, table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst', proto: 'tcp' },
  { set: KUBE_NODE_PORT_LOCAL_UDP, table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst', proto: 'udp' },
  { set: KUBE_NODE_PORT_UDP, table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst', proto: 'udp' },
  { set: KUBE_NODE_PORT_LOCAL_SCTP, table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst,dst', proto: 'sctp' },
  { set: KUBE_NODE_PORT_SCTP, table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst,dst', proto: 'sctp' },
  { set: KUBE_LOAD_BALANCER_FW, table: 'filter', from: KUBE_PROXY_FIREWALL, to: KUBE_SOURCE_RANGES_FIREWALL, match: 'dst,dst', proto: '' },
  { set: KUBE_LOAD_BALANCER_SOURCE_CIDR, table: 'filter', from: KUBE_SOURCE_RANGES_FIREWALL, to: 'RETURN', match: 'dst,dst,src', proto: '' },
  { set: KUBE_LOAD_BALANCER_SOURCE_IP, table: 'filter', from: KUBE_SOURCE_RANGES_FIREWALL, to: 'RETURN', match: 'dst,dst,src', proto: '' },
];

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The text `ipset save` prints for a net of a hash:...,net set: host nets lose their prefix. */
function ipsetNet(c: CIDR): string {
  return (c.family === 'IPv4' && c.bits === 32) || (c.family === 'IPv6' && c.bits === 128) ? c.cidr.replace(/\/\d+$/, '') : c.cidr;
}

class Rules {
  readonly chains = new Map<string, string[]>();
  constructor(names: readonly string[]) {
    for (const n of names) this.chains.set(n, []);
  }
  add(chain: string, ...parts: readonly (string | readonly string[])[]): void {
    const list = this.chains.get(chain);
    if (!list) throw new Error(`ipvs render: rule for undeclared chain ${chain}`);
    list.push(['-A', chain, ...parts.flatMap((p) => (typeof p === 'string' ? [p] : [...p]))].join(' '));
  }
}

export function renderIpvs(snap: Snapshot, options: IpvsRenderOptions): IpvsModel {
  const family = options.family;
  const protoOf = (p: string): string => p.toLowerCase();
  const sets = new Map<string, Set<string>>(IPSETS.map((s) => [s.name, new Set<string>()]));
  const put = (s: IpsetInfo, entry: string): void => {
    sets.get(s.name)?.add(entry);
  };
  const skipped = new Map<ServicePortName, string>();
  const servers = new Map<string, OwnedVirtualServer>();
  const bind = new Set<string>();
  const noNodeAccess: { ip: string; proto: string; port: number }[] = [];

  const canon = (list: readonly string[]): string[] => {
    const out: string[] = [];
    for (const t of list) {
      const c = canonicalIP(t);
      if (c && c.family === family && !out.includes(c.ip)) out.push(c.ip);
    }
    return out;
  };
  const isLoop = (ip: string): boolean => ip.startsWith('127.') || ip === '::1';
  const nodeIPs = canon(options.nodeIPs).filter((ip) => !isLoop(ip));
  const onNode = new Set(canon(options.localAddresses ?? options.nodeIPs));
  const primaryNodeIP = options.primaryNodeIP ?? nodeIPs[0];
  const isLocal = (e: Endpoint): boolean => (options.nodeName !== '' ? e.nodeName === options.nodeName : e.isLocal);

  for (const name of [...snap.servicePorts.keys()].sort(compare)) {
    const sp = snap.servicePorts.get(name);
    if (!sp || sp.clusterIP === '' || sp.clusterIP === 'None') continue;
    const cip = canonicalIP(sp.clusterIP);
    if (!cip) {
      skipped.set(name, `invalid cluster IP ${JSON.stringify(sp.clusterIP)}`);
      continue;
    }
    if (cip.family !== family) continue;
    if (!validPort(sp.port)) {
      skipped.set(name, `invalid port ${sp.port}`);
      continue;
    }
    if (sp.nodePort !== 0 && !validPort(sp.nodePort)) {
      skipped.set(name, `invalid node port ${sp.nodePort}`);
      continue;
    }
    const scheduler: string = sp.scheduler ?? options.scheduler;
    if (!isSchedulerName(scheduler)) {
      skipped.set(name, `unknown IPVS scheduler ${JSON.stringify(scheduler)}`);
      continue;
    }
    const eps = (snap.endpoints.get(name) ?? []).filter((e) => validPort(e.port) && e.ip.includes(':') === (family === 'IPv6'));
    const badWeight = eps.find((e) => !Number.isInteger(e.weight) || e.weight < 0 || e.weight > MAX_WEIGHT);
    if (badWeight) {
      skipped.set(name, `weight ${badWeight.weight} of endpoint ${badWeight.key} is outside IPVS's range 0..${MAX_WEIGHT}`);
      continue;
    }
    const proto = protoOf(sp.protocol);
    const externalIPs = canon(sp.externalIPs);
    const lbIPs = canon(sp.loadBalancerIPs);
    const externallyAccessible = sp.nodePort !== 0 || externalIPs.length > 0 || lbIPs.length > 0;
    const cat = categorizeEndpoints(sp, eps, { isLocal, externallyAccessible });
    // Upstream (PR 97081): a Local policy without local endpoints falls back to the cluster endpoints.
    const pick = (onlyLocal: boolean): readonly Endpoint[] => (onlyLocal && cat.localEndpoints.length > 0 ? cat.localEndpoints : cat.clusterEndpoints);
    const realServers = (list: readonly Endpoint[]): RealServer[] =>
      list.map((e) => ({ ip: canonicalIP(e.ip)?.ip ?? e.ip, port: e.port, weight: e.weight }))
        .sort((a, b) => compare(a.ip, b.ip) || a.port - b.port);
    const internalRS = realServers(pick(sp.internalPolicyLocal));
    const externalRS = realServers(pick(sp.externalPolicyLocal));
    const flags = scheduler === 'mh' ? ['mh-port'] : [];
    const addVS = (ip: string, port: number, rs: readonly RealServer[]): void => {
      const vs: OwnedVirtualServer = Object.freeze({
        owner: name, protocol: sp.protocol, ip, port, scheduler, persistence: sp.affinityTimeoutSeconds, flags, realServers: Object.freeze(rs),
      });
      const key = virtualServerKey(vs);
      if (!servers.has(key)) servers.set(key, vs);
    };

    // Hairpin: local endpoints reaching themselves through the service are masqueraded.
    for (const e of eps) {
      if (isLocal(e)) put(KUBE_LOOP_BACK, `${e.ip},${proto}:${e.port},${e.ip}`);
    }

    put(KUBE_CLUSTER_IP, `${cip.ip},${proto}:${sp.port}`);
    addVS(cip.ip, sp.port, internalRS);
    bind.add(cip.ip);

    for (const ip of externalIPs) {
      put(sp.externalPolicyLocal ? KUBE_EXTERNAL_IP_LOCAL : KUBE_EXTERNAL_IP, `${ip},${proto}:${sp.port}`);
      addVS(ip, sp.port, externalRS);
      if (!onNode.has(ip)) bind.add(ip);
    }

    const ranges = sp.loadBalancerSourceRanges.map((t) => parseCIDR(t.trim())).filter((c): c is CIDR => c !== undefined && c.family === family);
    for (const ip of lbIPs) {
      const entry = `${ip},${proto}:${sp.port}`;
      put(KUBE_LOAD_BALANCER, entry);
      if (sp.externalPolicyLocal) put(KUBE_LOAD_BALANCER_LOCAL, entry);
      if (sp.loadBalancerSourceRanges.length > 0) {
        put(KUBE_LOAD_BALANCER_FW, entry);
        let allowFromNode = false;
        for (const c of ranges) {
          put(KUBE_LOAD_BALANCER_SOURCE_CIDR, `${entry},${ipsetNet(c)}`);
          if (primaryNodeIP !== undefined && c.contains(primaryNodeIP)) allowFromNode = true;
        }
        // A node reaching its own LB IP has the LB IP as source (IPVS, not a real balancer).
        if (allowFromNode) put(KUBE_LOAD_BALANCER_SOURCE_IP, `${entry},${ip}`);
        else noNodeAccess.push({ ip, proto, port: sp.port });
      }
      addVS(ip, sp.port, externalRS);
      if (!onNode.has(ip)) bind.add(ip);
    }

    if (sp.nodePort !== 0 && nodeIPs.length > 0) {
      const local = sp.externalPolicyLocal;
      if (proto === 'sctp') {
        for (const ip of nodeIPs) {
          put(KUBE_NODE_PORT_SCTP, `${ip},sctp:${sp.nodePort}`);
          if (local) put(KUBE_NODE_PORT_LOCAL_SCTP, `${ip},sctp:${sp.nodePort}`);
        }
      } else {
        put(proto === 'udp' ? KUBE_NODE_PORT_UDP : KUBE_NODE_PORT_TCP, String(sp.nodePort));
        if (local) put(proto === 'udp' ? KUBE_NODE_PORT_LOCAL_UDP : KUBE_NODE_PORT_LOCAL_TCP, String(sp.nodePort));
      }
      for (const ip of nodeIPs) addVS(ip, sp.nodePort, externalRS);
    }

    if (sp.healthCheckNodePort !== 0 && validPort(sp.healthCheckNodePort)) put(KUBE_HEALTH_CHECK_NODE_PORT, String(sp.healthCheckNodePort));
  }
  for (const ip of bind) put(KUBE_IPVS_IPS, ip);

  const ipsets: IpsetModel[] = IPSETS.map((info) => Object.freeze({
    name: ipsetName(info, family),
    type: info.type,
    options: ipsetCreateOptions(info.type, family),
    entries: Object.freeze([...(sets.get(info.name) ?? [])].sort(entryCompare)),
  }));
  const nonEmpty = (s: IpsetInfo): boolean => (sets.get(s.name)?.size ?? 0) > 0;
  const setName = (s: IpsetInfo): string => ipsetName(s, family);
  const comment = (s: IpsetInfo): string[] => ['-m', 'comment', '--comment', `"${s.comment}"`];
  const match = (s: IpsetInfo, how: string): string[] => ['-m', 'set', '--match-set', setName(s), how];

  // writeIptablesRules, in upstream's order.
  const nat = new Rules(IPVS_CHAINS.nat);
  const filter = new Rules(IPVS_CHAINS.filter);
  const mark = masqueradeMark(options.masqueradeBit);
  nat.add(KUBE_SERVICES, '-s', family === 'IPv6' ? '::1/128' : '127.0.0.0/8', '-j', 'RETURN');
  for (const r of IPSET_RULES) {
    if (!nonEmpty(r.set)) continue;
    (r.table === 'nat' ? nat : filter).add(r.from, r.proto === '' ? [] : ['-p', r.proto], comment(r.set), match(r.set, r.match), '-j', r.to);
  }
  if (nonEmpty(KUBE_CLUSTER_IP)) {
    const localCIDR = options.clusterCIDRs.map((t) => parseCIDR(t.trim())).find((c) => c !== undefined && c.family === family);
    const base = [comment(KUBE_CLUSTER_IP), '-m', 'set', '--match-set', setName(KUBE_CLUSTER_IP)];
    if (options.masqueradeAll) nat.add(KUBE_SERVICES, ...base, 'dst,dst', '-j', KUBE_MARK_MASQ);
    else if (localCIDR) nat.add(KUBE_SERVICES, ...base, 'dst,dst', '!', '-s', localCIDR.cidr, '-j', KUBE_MARK_MASQ);
    // Without a cluster CIDR: node-originated traffic picks a VIP as source (kube-ipvs0 holds them all).
    else nat.add(KUBE_SERVICES, ...base, 'src,dst', '-j', KUBE_MARK_MASQ);
  }
  const externalIPRules = (args: readonly string[]): void => {
    nat.add(KUBE_SERVICES, args, '-m', 'physdev', '!', '--physdev-is-in', '-m', 'addrtype', '!', '--src-type', 'LOCAL', '-j', 'ACCEPT');
    nat.add(KUBE_SERVICES, args, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'ACCEPT');
  };
  if (nonEmpty(KUBE_EXTERNAL_IP)) {
    const args = [...comment(KUBE_EXTERNAL_IP), ...match(KUBE_EXTERNAL_IP, 'dst,dst')];
    nat.add(KUBE_SERVICES, args, '-j', KUBE_MARK_MASQ);
    externalIPRules(args);
  }
  if (nonEmpty(KUBE_EXTERNAL_IP_LOCAL)) externalIPRules([...comment(KUBE_EXTERNAL_IP_LOCAL), ...match(KUBE_EXTERNAL_IP_LOCAL, 'dst,dst')]);
  nat.add(KUBE_SERVICES, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', KUBE_NODE_PORT);
  nat.add(KUBE_LOAD_BALANCER_CHAIN, '-j', KUBE_MARK_MASQ);
  filter.add(KUBE_SOURCE_RANGES_FIREWALL, '-j', 'DROP');
  for (const e of noNodeAccess) {
    filter.add(KUBE_IPVS_OUT_FILTER, '-s', e.ip, '-m', 'ipvs', '--vaddr', e.ip, '--vproto', e.proto, '--vport', String(e.port), '-j', 'DROP');
  }
  // Accept traffic to virtual servers (last in KUBE-SERVICES), in case other rules would block it.
  for (const s of [KUBE_CLUSTER_IP, KUBE_LOAD_BALANCER]) {
    if (nonEmpty(s)) nat.add(KUBE_SERVICES, match(s, 'dst,dst'), '-j', 'ACCEPT');
  }
  filter.add(KUBE_FORWARD, '-m', 'comment', '--comment', '"kubernetes forwarding rules"', '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'ACCEPT');
  filter.add(KUBE_FORWARD, '-m', 'comment', '--comment', '"kubernetes forwarding conntrack rule"', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT');
  filter.add(KUBE_NODE_PORT, comment(KUBE_HEALTH_CHECK_NODE_PORT), match(KUBE_HEALTH_CHECK_NODE_PORT, 'dst'), '-j', 'ACCEPT');
  // Service addresses on kube-ipvs0 must not expose the node's own ports (upstream issue 72236).
  filter.add(KUBE_IPVS_FILTER, match(KUBE_LOAD_BALANCER, 'dst,dst'), '-j', 'RETURN');
  filter.add(KUBE_IPVS_FILTER, match(KUBE_CLUSTER_IP, 'dst,dst'), '-j', 'RETURN');
  filter.add(KUBE_IPVS_FILTER, match(KUBE_EXTERNAL_IP, 'dst,dst'), '-j', 'RETURN');
  filter.add(KUBE_IPVS_FILTER, match(KUBE_EXTERNAL_IP_LOCAL, 'dst,dst'), '-j', 'RETURN');
  filter.add(KUBE_IPVS_FILTER, match(KUBE_HEALTH_CHECK_NODE_PORT, 'dst'), '-j', 'RETURN');
  filter.add(KUBE_IPVS_FILTER, '-m', 'conntrack', '--ctstate', 'NEW', match(KUBE_IPVS_IPS, 'dst'), '-j', 'REJECT');
  nat.add(KUBE_POSTROUTING, '-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN');
  nat.add(KUBE_POSTROUTING, '-j', 'MARK', '--xor-mark', mark);
  nat.add(KUBE_POSTROUTING, '-m', 'comment', '--comment', '"kubernetes service traffic requiring SNAT"', '-j', 'MASQUERADE', ...((options.randomFully ?? true) ? ['--random-fully'] : []));
  nat.add(KUBE_MARK_MASQ, '-j', 'MARK', '--or-mark', mark);

  const iptables: IptablesModel = Object.freeze({
    filter: Object.freeze({ chains: filter.chains }),
    nat: Object.freeze({ chains: nat.chains }),
    serviceChains: new Map(),
    skipped,
    largeClusterMode: false,
    noLocalEndpoints: Object.freeze({ internal: 0, external: 0 }),
  });
  return Object.freeze({
    virtualServers: Object.freeze([...servers.entries()].sort(([a], [b]) => compare(a, b)).map(([, v]) => v)),
    addresses: Object.freeze([...bind].sort(compare)),
    ipsets: Object.freeze(ipsets),
    iptables,
    skipped,
  });
}

/** Entries in a stable order: numeric for ports, text otherwise. */
function entryCompare(a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return Number(a) - Number(b);
  return compare(a, b);
}
