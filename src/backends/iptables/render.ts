/**
 * Renders a snapshot into the filter and nat rules upstream kube-proxy's iptables proxier
 * (pkg/proxy/iptables/proxier.go, syncProxyRules) writes: same chains, same rules, same
 * comments, same order within each chain. Pure: no node: imports, no clock, no randomness.
 *
 * Where upstream's order is not defined (it walks a Go map of service ports), service ports
 * are taken in ServicePortName order, so the output is deterministic.
 */
import type { Endpoint } from '../../core/endpoints.js';
import type { ServicePortName } from '../../core/ids.js';
import type { ServicePort } from '../../core/service-port.js';
import type { Snapshot } from '../../core/snapshot.js';
import { categorizeEndpoints, type NodeTopology } from '../../core/traffic-policy.js';
import { PortCache, type PortView, SortedPorts, viewOf } from '../port-cache.js';
import { type PieceRules, TableChains } from './table-chains.js';
import { canonicalIP, parseCIDR } from '../../core/ip.js';
import type { IptablesModel, IptablesRenderOptions, RenderedIptablesModel, ServiceChains, TableName } from './model.js';
import {
  KUBE_EXTERNAL_SERVICES, KUBE_FIREWALL, KUBE_FORWARD, KUBE_MARK_MASQ, KUBE_NODEPORTS, KUBE_POSTROUTING,
  KUBE_PROXY_CANARY, KUBE_PROXY_FIREWALL, KUBE_SERVICES, LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
  endpointChainName, masqueradeMark, probability, serviceChainNames,
} from './names.js';

export type BuiltinChain = 'PREROUTING' | 'INPUT' | 'FORWARD' | 'OUTPUT' | 'POSTROUTING';

/**
 * A jump from a built-in chain into one of ours. Upstream installs these outside the restore
 * (EnsureChain on the target, then EnsureRule prepend) on every full sync, in list order.
 */
export interface JumpRule {
  readonly table: TableName;
  /** The built-in chain the rule goes in. */
  readonly chain: BuiltinChain;
  /** Our chain it jumps to. */
  readonly target: string;
  /** '' for none. */
  readonly comment: string;
  /** Matches before the comment (e.g. conntrack NEW). */
  readonly extraArgs: readonly string[];
  readonly position: 'prepend';
  /** The iptables arguments after `-I <chain>`: extraArgs, the comment, `-j target` (argv, unquoted). */
  readonly args: readonly string[];
}

/** A jump rule (also IPVS mode's, which installs its own list the same way). */
export function jumpRule(table: TableName, chain: BuiltinChain, target: string, comment: string, extraArgs: readonly string[]): JumpRule {
  const args = [...extraArgs, ...(comment === '' ? [] : ['-m', 'comment', '--comment', comment]), '-j', target];
  return Object.freeze({ table, chain, target, comment, extraArgs: Object.freeze([...extraArgs]), position: 'prepend' as const, args: Object.freeze(args) });
}

const CT_NEW = ['-m', 'conntrack', '--ctstate', 'NEW'] as const;

/** Upstream's iptablesJumpChains, in its order. */
export const JUMP_RULES: readonly JumpRule[] = Object.freeze([
  jumpRule('filter', 'INPUT', KUBE_EXTERNAL_SERVICES, 'kubernetes externally-visible service portals', CT_NEW),
  jumpRule('filter', 'FORWARD', KUBE_EXTERNAL_SERVICES, 'kubernetes externally-visible service portals', CT_NEW),
  jumpRule('filter', 'INPUT', KUBE_NODEPORTS, 'kubernetes health check service ports', []),
  jumpRule('filter', 'FORWARD', KUBE_SERVICES, 'kubernetes service portals', CT_NEW),
  jumpRule('filter', 'OUTPUT', KUBE_SERVICES, 'kubernetes service portals', CT_NEW),
  jumpRule('filter', 'FORWARD', KUBE_FORWARD, 'kubernetes forwarding rules', []),
  jumpRule('filter', 'INPUT', KUBE_PROXY_FIREWALL, 'kubernetes load balancer firewall', CT_NEW),
  jumpRule('filter', 'OUTPUT', KUBE_PROXY_FIREWALL, 'kubernetes load balancer firewall', CT_NEW),
  jumpRule('filter', 'FORWARD', KUBE_PROXY_FIREWALL, 'kubernetes load balancer firewall', CT_NEW),
  jumpRule('nat', 'OUTPUT', KUBE_SERVICES, 'kubernetes service portals', []),
  jumpRule('nat', 'PREROUTING', KUBE_SERVICES, 'kubernetes service portals', []),
  jumpRule('nat', 'POSTROUTING', KUBE_POSTROUTING, 'kubernetes postrouting rules', []),
]);

/**
 * Upstream's iptablesKubeletJumpChains: jumps into kubelet's KUBE-FIREWALL (no comment).
 * Upstream installs them always; kproxy only when it writes KUBE-FIREWALL itself (localhost
 * NodePorts on), see jumpRulesFor. Upstream never removes them on cleanup.
 */
export const KUBELET_JUMP_RULES: readonly JumpRule[] = Object.freeze([
  jumpRule('filter', 'INPUT', KUBE_FIREWALL, '', []),
  jumpRule('filter', 'OUTPUT', KUBE_FIREWALL, '', []),
]);

/** The jumps a full sync of this model must ensure (after the restore, which creates their targets). */
export function jumpRulesFor(model: IptablesModel): readonly JumpRule[] {
  return model.filter.chains.has(KUBE_FIREWALL) ? [...JUMP_RULES, ...KUBELET_JUMP_RULES] : JUMP_RULES;
}

/**
 * Upstream's flush detector (utiliptables Monitor): an empty KUBE-PROXY-CANARY chain in the
 * mangle, nat and filter tables, created outside the restore. Upstream polls only the first
 * table (mangle) every sync period; once it is gone it waits (up to 5 s) for the nat and filter
 * canaries to be gone too, then forces a full sync and recreates all three.
 * (KUBE-KUBELET-CANARY is kubelet's own canary; kube-proxy does not use it.)
 */
export const CANARY_CHAIN = KUBE_PROXY_CANARY;
export const CANARY_TABLES = ['mangle', 'nat', 'filter'] as const;

/** The top-level chains each table's restore declares, in upstream's order. */
export const TOP_LEVEL_CHAINS: { readonly filter: readonly string[]; readonly nat: readonly string[] } = Object.freeze({
  filter: Object.freeze([KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL]),
  nat: Object.freeze([KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]),
});

const TOP_LEVEL_SET: { readonly filter: ReadonlySet<string>; readonly nat: ReadonlySet<string> } = {
  filter: new Set(TOP_LEVEL_CHAINS.filter),
  nat: new Set(TOP_LEVEL_CHAINS.nat),
};

const EMPTY_PIECE: PieceRules = Object.freeze({ topChains: Object.freeze([]), topRules: Object.freeze([]), ownChains: Object.freeze([]), ownRules: Object.freeze([]) });

/** Builds one piece's rules. */
class Piece {
  private readonly lists = new Map<string, string[]>();
  private readonly topChains: string[] = [];
  private readonly topRules: string[][] = [];
  private readonly ownChains: string[] = [];
  private readonly ownRules: string[][] = [];

  constructor(private readonly table: TableName) {}

  declare(chain: string): void {
    if (this.lists.has(chain) || TOP_LEVEL_SET[this.table].has(chain)) throw new Error(`iptables render: chain ${this.table}/${chain} declared twice`);
    const list: string[] = [];
    this.lists.set(chain, list);
    this.ownChains.push(chain);
    this.ownRules.push(list);
  }

  add(chain: string, ...parts: readonly (string | readonly string[])[]): void {
    let list = this.lists.get(chain);
    if (!list) {
      if (!TOP_LEVEL_SET[this.table].has(chain)) throw new Error(`iptables render: rule for undeclared chain ${this.table}/${chain}`);
      this.lists.set(chain, (list = []));
      this.topChains.push(chain);
      this.topRules.push(list);
    }
    // join makes one flat string; `+=` would keep a rope of ~15 nodes per rule (3x the memory at 10k services).
    const words: string[] = ['-A', chain];
    for (const p of parts) {
      if (typeof p === 'string') words.push(p);
      else for (const x of p) words.push(x);
    }
    list.push(words.join(' '));
  }

  /**
   * The rules, frozen, in arrays of their exact size: an array grown by push keeps room for 17
   * elements at least (~190 bytes for a KUBE-SEP- chain's 2 rules, against ~70).
   */
  done(): PieceRules {
    if (this.lists.size === 0) return EMPTY_PIECE;
    const exact = <T>(list: readonly T[]): readonly T[] => Object.freeze(list.slice());
    return Object.freeze({
      topChains: exact(this.topChains), topRules: exact(this.topRules.map(exact)),
      ownChains: exact(this.ownChains), ownRules: exact(this.ownRules.map(exact)),
    });
  }
}

/** `"text"`: upstream quotes comments that contain spaces, and writes one-word comments bare. */
function q(text: string): string {
  return `"${text}"`;
}
/** What a render needs from the options, computed once per renderer. */
interface RenderContext {
  readonly options: IptablesRenderOptions;
  readonly family: 'IPv4' | 'IPv6';
  readonly nfacct: boolean;
  readonly localhostNodePorts: boolean;
  readonly ifLocal: readonly string[] | undefined;
  readonly ifNotLocal: readonly string[] | undefined;
  readonly primaryNodeIP: string | undefined;
}

/** One service port's share of the model. */
interface PortFragment {
  readonly filter: PieceRules;
  readonly nat: PieceRules;
  readonly chains: ServiceChains;
  readonly noLocalInternal: number;
  readonly noLocalExternal: number;
}

/**
 * Renders snapshots one after another, re-rendering only the service ports whose ServicePort or
 * endpoint list is a different object than at the previous render (the snapshot keeps the very
 * same objects for ports that did not change) and reusing the rest. The result is always exactly
 * what a fresh render of the snapshot gives (renderIptables): only the work differs. A flip of
 * large-cluster mode (it changes every endpoint rule's comment) re-renders everything.
 */
export class IptablesRenderer {
  private readonly ctx: RenderContext;
  private readonly header: { readonly filter: PieceRules; readonly nat: PieceRules };
  private readonly trailer: { readonly filter: PieceRules; readonly nat: PieceRules };
  private readonly ports: PortCache<PortView, PortFragment>;
  private largeClusterMode: boolean | undefined;
  /** Service ports rendered by the last call (for benches and tests). */
  lastRendered = 0;

  constructor(options: IptablesRenderOptions) {
    const family = options.family;
    const isIPv6 = family === 'IPv6';
    const mark = masqueradeMark(options.masqueradeBit);
    const randomFully = options.randomFully ?? true;
    const nfacct = options.nfacct ?? false;

    // --nodeport-addresses, as upstream's NodePortAddresses: only this family's CIDRs; none (or a
    // zero CIDR) means "all local addresses".
    const npCIDRs = options.nodePortAddresses
      .map((t) => parseCIDR(t.trim()))
      .filter((c): c is NonNullable<typeof c> => c !== undefined && c.family === family);
    const matchAll = npCIDRs.length === 0 || npCIDRs.some((c) => c.cidr.endsWith('/0'));
    const containsIPv4Loopback = family === 'IPv4' && (matchAll || npCIDRs.some((c) => c.contains('127.0.0.0') || c.cidr.startsWith('127.')));
    const localhostNodePorts = options.localhostNodePorts && family === 'IPv4' && containsIPv4Loopback;

    // Local-traffic detection by cluster CIDR (upstream's DetectLocalByCIDR); none → no-op detector.
    const localCIDR = options.clusterCIDRs.map((t) => parseCIDR(t.trim())).find((c) => c !== undefined && c.family === family);
    const ifLocal = localCIDR ? ['-s', localCIDR.cidr] : undefined;
    const ifNotLocal = localCIDR ? ['!', '-s', localCIDR.cidr] : undefined;

    const primaryNodeIP = options.primaryNodeIP ?? options.nodeIPs.find((ip) => {
      const c = canonicalIP(ip);
      return c !== undefined && c.family === family && !c.ip.startsWith('127.') && c.ip !== '::1';
    });

    this.ctx = { options, family, nfacct, localhostNodePorts, ifLocal, ifNotLocal, primaryNodeIP };
    this.ports = new PortCache((sp, eps) => viewOf(sp, eps, family));

    const filterH = new Piece('filter');
    const natH = new Piece('nat');
    natH.add(KUBE_POSTROUTING, '-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN');
    // Clear the mark so a packet that traverses the stack again is not masqueraded twice.
    natH.add(KUBE_POSTROUTING, '-j', 'MARK', '--xor-mark', mark);
    natH.add(KUBE_POSTROUTING, '-m', 'comment', '--comment', q('kubernetes service traffic requiring SNAT'), '-j', 'MASQUERADE', ...(randomFully ? ['--random-fully'] : []));
    natH.add(KUBE_MARK_MASQ, '-j', 'MARK', '--or-mark', mark);
    if (localhostNodePorts) {
      // route_localnet opens 127.0.0.0/8 to the outside (issue 90259); this closes it again.
      filterH.declare(KUBE_FIREWALL);
      filterH.add(KUBE_FIREWALL, '-m', 'comment', '--comment', q('block incoming localnet connections'),
        '-d', '127.0.0.0/8', '!', '-s', '127.0.0.0/8', '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'DROP');
    }
    this.header = { filter: filterH.done(), nat: natH.done() };

    const filterT = new Piece('filter');
    const natT = new Piece('nat');

    // The jump to KUBE-NODEPORTS must be the last rule of KUBE-SERVICES.
    const nodePortsComment = q('kubernetes service nodeports; NOTE: this must be the last rule in this chain');
    if (matchAll) {
      const dest = ['-m', 'addrtype', '--dst-type', 'LOCAL'];
      // Localhost NodePorts never work on IPv6, and on IPv4 only with route_localnet.
      if (isIPv6) dest.push('!', '-d', '::1/128');
      else if (!localhostNodePorts) dest.push('!', '-d', '127.0.0.0/8');
      natT.add(KUBE_SERVICES, '-m', 'comment', '--comment', nodePortsComment, dest, '-j', KUBE_NODEPORTS);
    } else {
      const seen = new Set<string>();
      for (const text of options.nodeIPs) {
        const c = canonicalIP(text);
        if (!c || c.family !== family || seen.has(c.ip)) continue;
        seen.add(c.ip);
        const loopback = c.family === 'IPv4' ? c.ip.startsWith('127.') : c.ip === '::1';
        if (loopback && (isIPv6 || !localhostNodePorts)) continue;
        natT.add(KUBE_SERVICES, '-m', 'comment', '--comment', nodePortsComment, '-d', c.ip, '-j', KUBE_NODEPORTS);
      }
    }

    // INVALID packets would otherwise reset connections (upstream issues 74839, 117924).
    if (!(options.conntrackTCPLiberal ?? false)) {
      filterT.add(KUBE_FORWARD, '-m', 'conntrack', '--ctstate', 'INVALID', ...(nfacct ? ['-m', 'nfacct', '--nfacct-name', 'ct_state_invalid_dropped_pkts'] : []), '-j', 'DROP');
    }
    // Marked traffic is forwarded even when FORWARD's policy is not ACCEPT.
    filterT.add(KUBE_FORWARD, '-m', 'comment', '--comment', q('kubernetes forwarding rules'), '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'ACCEPT');
    filterT.add(KUBE_FORWARD, '-m', 'comment', '--comment', q('kubernetes forwarding conntrack rule'), '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT');

    this.trailer = { filter: filterT.done(), nat: natT.done() };
  }

  render(snap: Snapshot): RenderedIptablesModel {
    const { ordered, topology } = this.ports.update(snap, this.ctx.options.nodeName);

    let totalEndpoints = 0;
    for (const e of ordered) if (typeof e.view === 'object') totalEndpoints += e.view.endpoints.length;
    const largeClusterMode = totalEndpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    const rerenderAll = largeClusterMode !== this.largeClusterMode;
    this.largeClusterMode = largeClusterMode;

    const { names, fragments, skipped, rendered } = this.ports.fragments(ordered, (view) => renderPort(this.ctx, view, largeClusterMode, topology), rerenderAll);
    const filterPieces: PieceRules[] = [];
    const natPieces: PieceRules[] = [];
    const serviceChains: ServiceChains[] = [];
    let noLocalInternal = 0;
    let noLocalExternal = 0;
    for (const f of fragments) {
      filterPieces.push(f.filter);
      natPieces.push(f.nat);
      serviceChains.push(f.chains);
      noLocalInternal += f.noLocalInternal;
      noLocalExternal += f.noLocalExternal;
    }
    this.lastRendered = rendered;

    return Object.freeze({
      filter: Object.freeze({ chains: new TableChains('filter', TOP_LEVEL_CHAINS.filter, this.header.filter, new SortedPorts(names, filterPieces), this.trailer.filter) }),
      nat: Object.freeze({ chains: new TableChains('nat', TOP_LEVEL_CHAINS.nat, this.header.nat, new SortedPorts(names, natPieces), this.trailer.nat) }),
      serviceChains: new SortedPorts(names, serviceChains),
      skipped,
      largeClusterMode,
      noLocalEndpoints: Object.freeze({ internal: noLocalInternal, external: noLocalExternal }),
    });
  }
}

/** A fresh render of one snapshot (same result as an IptablesRenderer's render of it). */
export function renderIptables(snap: Snapshot, options: IptablesRenderOptions): RenderedIptablesModel {
  return new IptablesRenderer(options).render(snap);
}

/** One service port's rules: its share of the top-level chains, and its own chains. */
function renderPort(ctx: RenderContext, v: PortView, largeClusterMode: boolean, topology: NodeTopology): PortFragment {
  const { options, nfacct, localhostNodePorts, ifLocal, ifNotLocal, primaryNodeIP } = ctx;
  /** Per-endpoint comments, left out in large clusters (they make up 40%+ of the ruleset). */
  const comment = (text: string): string[] => (largeClusterMode ? [] : ['-m', 'comment', '--comment', text]);
  const filter = new Piece('filter');
  const nat = new Piece('nat');
  let noLocalInternal = 0;
  let noLocalExternal = 0;
  const { sp } = v;
  const name: string = sp.name;
  const proto = sp.protocol.toLowerCase();
  const port = String(sp.port);
  const chains = serviceChainNames(name, proto);

  const externallyAccessible = sp.nodePort !== 0 || v.loadBalancerIPs.length > 0 || v.externalIPs.length > 0;
  const isLocal = (e: Endpoint): boolean => (options.nodeName !== '' ? e.nodeName === options.nodeName : e.isLocal);
  const cat = categorizeEndpoints(sp, v.endpoints, { isLocal, externallyAccessible, topology });
  const { clusterEndpoints, localEndpoints, usesClusterPolicyChain, usesLocalPolicyChain, hasInternalEndpoints, hasExternalEndpoints, usesExternalTrafficChain } = cat;
  const hasEndpoints = cat.hasAnyEndpoints;
  const reachable = cat.allReachable;

  const clusterPolicyChain = chains.cluster;
  const localPolicyChain = chains.local;
  const internalTrafficChain = sp.internalPolicyLocal ? localPolicyChain : clusterPolicyChain;
  const externalPolicyChain = sp.externalPolicyLocal ? localPolicyChain : clusterPolicyChain;
  const externalTrafficChain = chains.external;

  const fwChain = chains.firewall;
  const usesFWChain = hasEndpoints && v.loadBalancerIPs.length > 0 && v.sourceRanges.length > 0;
  const loadBalancerTrafficChain = usesFWChain ? fwChain : externalTrafficChain;

  let internalFilterTarget = '';
  let internalFilterComment = '';
  let externalFilterTarget = '';
  let externalFilterComment = '';
  if (!hasEndpoints) {
    // No usable endpoint anywhere: no nat chains at all, only REJECTs in filter.
    internalFilterTarget = 'REJECT';
    internalFilterComment = q(`${name} has no endpoints`);
    externalFilterTarget = 'REJECT';
    externalFilterComment = internalFilterComment;
  } else {
    if (!hasInternalEndpoints) {
      internalFilterTarget = 'DROP';
      internalFilterComment = q(`${name} has no local endpoints`);
      noLocalInternal = 1;
    }
    if (!hasExternalEndpoints) {
      externalFilterTarget = 'DROP';
      externalFilterComment = q(`${name} has no local endpoints`);
      noLocalExternal = 1;
    }
  }

  const protoMatch = ['-m', proto, '-p', proto];

  // Cluster IP.
  if (hasInternalEndpoints) {
    nat.add(KUBE_SERVICES, '-m', 'comment', '--comment', q(`${name} cluster IP`), protoMatch, '-d', v.clusterIP, '--dport', port, '-j', internalTrafficChain);
  } else {
    filter.add(KUBE_SERVICES, '-m', 'comment', '--comment', internalFilterComment, protoMatch, '-d', v.clusterIP, '--dport', port, '-j', internalFilterTarget);
  }

  // External IPs.
  for (const ip of v.externalIPs) {
    if (hasEndpoints) {
      nat.add(KUBE_SERVICES, '-m', 'comment', '--comment', q(`${name} external IP`), protoMatch, '-d', ip, '--dport', port, '-j', externalTrafficChain);
    }
    if (!hasExternalEndpoints) {
      filter.add(KUBE_EXTERNAL_SERVICES, '-m', 'comment', '--comment', externalFilterComment, protoMatch, '-d', ip, '--dport', port, '-j', externalFilterTarget);
    }
  }

  // Load-balancer ingress IPs.
  for (const ip of v.loadBalancerIPs) {
    if (hasEndpoints) {
      nat.add(KUBE_SERVICES, '-m', 'comment', '--comment', q(`${name} loadbalancer IP`), protoMatch, '-d', ip, '--dport', port, '-j', loadBalancerTrafficChain);
    }
    if (usesFWChain) {
      filter.add(KUBE_PROXY_FIREWALL, '-m', 'comment', '--comment', q(`${name} traffic not accepted by ${fwChain}`), protoMatch, '-d', ip, '--dport', port, '-j', 'DROP');
    }
  }
  if (!hasExternalEndpoints) {
    for (const ip of v.loadBalancerIPs) {
      filter.add(KUBE_EXTERNAL_SERVICES, '-m', 'comment', '--comment', externalFilterComment, protoMatch, '-d', ip, '--dport', port, '-j', externalFilterTarget);
    }
  }

  // Node ports (not subject to loadBalancerSourceRanges, as upstream).
  if (sp.nodePort !== 0) {
    const nodePort = String(sp.nodePort);
    if (hasEndpoints) {
      if (localhostNodePorts && nfacct) {
        // Only counts localhost NodePort traffic; the next rule matches it too.
        nat.add(KUBE_NODEPORTS, '-m', 'comment', '--comment', name, protoMatch, '-d', '127.0.0.0/8', '--dport', nodePort,
          '-m', 'nfacct', '--nfacct-name', 'localhost_nps_accepted_pkts', '-j', externalTrafficChain);
      }
      nat.add(KUBE_NODEPORTS, '-m', 'comment', '--comment', name, protoMatch, '--dport', nodePort, '-j', externalTrafficChain);
    }
    if (!hasExternalEndpoints) {
      filter.add(KUBE_EXTERNAL_SERVICES, '-m', 'comment', '--comment', externalFilterComment, '-m', 'addrtype', '--dst-type', 'LOCAL',
        protoMatch, '--dport', nodePort, '-j', externalFilterTarget);
    }
  }

  // Health check node port: accepted whether or not this node has local endpoints.
  if (sp.healthCheckNodePort !== 0) {
    filter.add(KUBE_NODEPORTS, '-m', 'comment', '--comment', q(`${name} health check node port`), '-m', 'tcp', '-p', 'tcp',
      '--dport', String(sp.healthCheckNodePort), '-j', 'ACCEPT');
  }

  // Per-service chains, in upstream's declaration order: EXT, FW, SVC, SVL, SEPs.
  if (usesExternalTrafficChain) nat.declare(externalTrafficChain);
  if (usesFWChain) nat.declare(fwChain);
  if (usesClusterPolicyChain) nat.declare(clusterPolicyChain);
  if (usesLocalPolicyChain) nat.declare(localPolicyChain);
  const sepNames = new Map<string, string>();
  for (const e of reachable) {
    const sep = endpointChainName(name, proto, e.key);
    sepNames.set(e.key, sep);
    nat.declare(sep);
  }

  // Internal traffic: masquerade what does not come from a pod (or everything with --masquerade-all).
  if (hasInternalEndpoints) {
    const args = ['-m', 'comment', '--comment', q(`${name} cluster IP`), ...protoMatch, '-d', v.clusterIP, '--dport', port];
    if (options.masqueradeAll) nat.add(internalTrafficChain, args, '-j', KUBE_MARK_MASQ);
    else if (ifNotLocal) nat.add(internalTrafficChain, args, ifNotLocal, '-j', KUBE_MARK_MASQ);
  }

  // External traffic: everything for node ports, external and load-balancer IPs lands here.
  if (usesExternalTrafficChain) {
    if (!sp.externalPolicyLocal) {
      // Endpoints may be on other nodes: masquerade so replies come back through this node.
      nat.add(externalTrafficChain, '-m', 'comment', '--comment', q(`masquerade traffic for ${name} external destinations`), '-j', KUBE_MARK_MASQ);
    } else {
      if (ifLocal) {
        // Pods reaching an external destination get Cluster policy (as if via the real LB).
        nat.add(externalTrafficChain, '-m', 'comment', '--comment', q(`pod traffic for ${name} external destinations`), ifLocal, '-j', clusterPolicyChain);
      }
      // The node itself: its source would be the (local) external IP, so masquerade, and use Cluster policy.
      nat.add(externalTrafficChain, '-m', 'comment', '--comment', q(`masquerade LOCAL traffic for ${name} external destinations`),
        '-m', 'addrtype', '--src-type', 'LOCAL', '-j', KUBE_MARK_MASQ);
      nat.add(externalTrafficChain, '-m', 'comment', '--comment', q(`route LOCAL traffic for ${name} external destinations`),
        '-m', 'addrtype', '--src-type', 'LOCAL', '-j', clusterPolicyChain);
    }
    if (hasExternalEndpoints) nat.add(externalTrafficChain, '-j', externalPolicyChain);
  }

  // loadBalancerSourceRanges.
  if (usesFWChain) {
    const args = ['-m', 'comment', '--comment', q(`${name} loadbalancer IP`)];
    let allowFromNode = false;
    for (const r of v.sourceRanges) {
      nat.add(fwChain, args, '-s', r.cidr, '-j', externalTrafficChain);
      if (primaryNodeIP !== undefined && r.contains(primaryNodeIP)) allowFromNode = true;
    }
    // A node reaching a VIP-like LB IP that is local loops back with the LB IP as source.
    if (allowFromNode) {
      for (const ip of v.loadBalancerIPs) nat.add(fwChain, args, '-s', ip, '-j', externalTrafficChain);
    }
    // Not DNATed: KUBE-PROXY-FIREWALL in filter drops it. This rule only counts.
    nat.add(fwChain, '-m', 'comment', '--comment', q(`other traffic to ${name} will be dropped by KUBE-PROXY-FIREWALL`));
  }

  const toEndpoints = (chain: string, eps: readonly Endpoint[]): void => {
    if (sp.affinityTimeoutSeconds > 0) {
      for (const e of eps) {
        const sep = sepNames.get(e.key) ?? endpointChainName(name, proto, e.key);
        nat.add(chain, comment(q(`${name} -> ${e.key}`)), '-m', 'recent', '--name', sep, '--rcheck', '--seconds', String(sp.affinityTimeoutSeconds), '--reap', '-j', sep);
      }
    }
    const n = eps.length;
    eps.forEach((e, i) => {
      const sep = sepNames.get(e.key) ?? endpointChainName(name, proto, e.key);
      const stat = i < n - 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', probability(n - i)] : [];
      nat.add(chain, comment(q(`${name} -> ${e.key}`)), stat, '-j', sep);
    });
  };
  if (usesClusterPolicyChain) toEndpoints(clusterPolicyChain, clusterEndpoints);
  if (usesLocalPolicyChain) toEndpoints(localPolicyChain, localEndpoints);

  for (const e of reachable) {
    const sep = sepNames.get(e.key) ?? endpointChainName(name, proto, e.key);
    // Hairpin: a pod reaching itself through the service must be SNATed, or it would answer itself directly.
    nat.add(sep, comment(name), '-s', e.ip, '-j', KUBE_MARK_MASQ);
    const affinity = sp.affinityTimeoutSeconds > 0 ? ['-m', 'recent', '--name', sep, '--set'] : [];
    nat.add(sep, comment(name), affinity, protoMatch, '-j', 'DNAT', '--to-destination', e.key);
  }

  const filterRules = filter.done();
  const natRules = nat.done();
  return {
    filter: filterRules, nat: natRules, noLocalInternal, noLocalExternal,
    // A port's own chains are those its pieces declare (only in nat: filter has top-level rules only).
    chains: Object.freeze({ filter: filterRules.ownChains, nat: natRules.ownChains }),
  };
}
