/**
 * Renders a snapshot into the ruleset upstream kube-proxy's nftables proxier
 * (pkg/proxy/nftables/proxier.go: setupNFTables + syncProxyRules) programs: same table,
 * chains, sets, maps, rules and elements. Pure: no node: imports, no clock, no randomness.
 * Service ports are taken in ServicePortName order (upstream walks a Go map), so output is
 * deterministic.
 */
import type { Endpoint } from '../../core/endpoints.js';
import type { ServicePortName } from '../../core/ids.js';
import type { ServicePort } from '../../core/service-port.js';
import type { Snapshot } from '../../core/snapshot.js';
import { categorizeEndpoints, type NodeTopology } from '../../core/traffic-policy.js';
import { PortCache, type PortView, SortedPorts, viewOf } from '../port-cache.js';
import { canonicalIP, parseCIDR } from '../../core/ip.js';
import { flat } from '../../core/text.js';
import { masqueradeMark } from '../iptables/names.js';
import { PortIndexed } from './port-indexed.js';
import type { BaseChainSpec, NftChain, NftElement, NftSet, NftablesModel, NftablesRenderOptions, ServicePortObjects } from './model.js';
import {
  CLUSTER_IPS_CHECK, CLUSTER_IPS_SET, FILTER_FORWARD, FILTER_INPUT, FILTER_OUTPUT, FILTER_OUTPUT_POST_DNAT, FILTER_PREROUTING,
  FIREWALL_CHECK, FIREWALL_IPS_MAP, MARK_MASQ_CHAIN, MASQUERADING_CHAIN, NAT_OUTPUT, NAT_POSTROUTING, NAT_PREROUTING,
  NODEPORT_ENDPOINTS_CHECK, NODEPORT_IPS_SET, NO_ENDPOINT_NODEPORTS_MAP, NO_ENDPOINT_SERVICES_MAP, REJECT_CHAIN,
  SERVICES_CHAIN, SERVICE_ENDPOINTS_CHECK, SERVICE_IPS_MAP, SERVICE_NODEPORTS_MAP, TABLE, endpointNames, serviceChainNames, spellsServicePort,
} from './names.js';

/** Upstream's base chains: filter chains run before DNAT (dstnat-10), one more after it (dstnat+10). */
export const BASE_CHAINS: readonly (BaseChainSpec & { readonly name: string })[] = Object.freeze([
  { name: FILTER_PREROUTING, type: 'filter', hook: 'prerouting', priority: -110 },
  { name: FILTER_INPUT, type: 'filter', hook: 'input', priority: -110 },
  { name: FILTER_FORWARD, type: 'filter', hook: 'forward', priority: -110 },
  { name: FILTER_OUTPUT, type: 'filter', hook: 'output', priority: -110 },
  { name: FILTER_OUTPUT_POST_DNAT, type: 'filter', hook: 'output', priority: -90 },
  { name: NAT_PREROUTING, type: 'nat', hook: 'prerouting', priority: -100 },
  { name: NAT_OUTPUT, type: 'nat', hook: 'output', priority: -100 },
  { name: NAT_POSTROUTING, type: 'nat', hook: 'postrouting', priority: 100 },
]);

/** Jumps from base chains into the top-level regular chains, in upstream's order. */
export const JUMP_CHAINS: readonly { readonly dst: string; readonly src: string; readonly match: string }[] = Object.freeze([
  { dst: SERVICES_CHAIN, src: NAT_OUTPUT, match: '' },
  { dst: SERVICES_CHAIN, src: NAT_PREROUTING, match: '' },
  { dst: MASQUERADING_CHAIN, src: NAT_POSTROUTING, match: '' },
  { dst: NODEPORT_ENDPOINTS_CHECK, src: FILTER_INPUT, match: 'ct state new' },
  // reject is only valid in input/forward/output hooks, hence not from filter-prerouting.
  { dst: SERVICE_ENDPOINTS_CHECK, src: FILTER_INPUT, match: 'ct state new' },
  { dst: SERVICE_ENDPOINTS_CHECK, src: FILTER_FORWARD, match: 'ct state new' },
  { dst: SERVICE_ENDPOINTS_CHECK, src: FILTER_OUTPUT, match: 'ct state new' },
  { dst: FIREWALL_CHECK, src: FILTER_PREROUTING, match: 'ct state new' },
  { dst: FIREWALL_CHECK, src: FILTER_OUTPUT, match: 'ct state new' },
  { dst: CLUSTER_IPS_CHECK, src: FILTER_FORWARD, match: 'ct state new' },
  { dst: CLUSTER_IPS_CHECK, src: FILTER_OUTPUT_POST_DNAT, match: 'ct state new' },
]);

/**
 * Collects chains, sets and elements: of the fixed part of the ruleset (header), or of one
 * service port (a piece, which may add elements to the header's shared sets).
 */
class ModelBuilder {
  readonly chains = new Map<string, { name: string; base?: BaseChainSpec; comment?: string; rules: string[] }>();
  readonly sets = new Map<string, NftSet>();
  readonly elements = new Map<string, NftElement[]>();
  private readonly keys = new Map<string, Set<string>>();

  /** sharedSets: for a service port's piece, the header's sets it may add elements to. */
  constructor(private readonly sharedSets?: ReadonlySet<string>) {}

  /**
   * The chains in declaration order, frozen as the model holds them, with rule lists of their
   * exact size (see exact). A per-service chain is `{ name, rules }`, one hidden class for all
   * (a spread copy would make one per object).
   */
  frozenChains(): NftChain[] {
    const out: NftChain[] = [];
    for (const c of this.chains.values()) {
      const rules = exact(c.rules);
      out.push(Object.freeze(c.base === undefined && c.comment === undefined ? { name: c.name, rules } : { ...c, rules }));
    }
    return out;
  }

  /** The element lists, frozen, by set. */
  frozenElements(): ElementList[] {
    const out: ElementList[] = [];
    for (const [set, list] of this.elements) out.push(Object.freeze({ set, list: exact(list) }));
    return out;
  }

  chain(name: string, extra: { base?: BaseChainSpec; comment?: string } = {}): void {
    if (this.chains.has(name)) return; // upstream's ensureChain: declared once
    this.chains.set(name, { name, ...extra, rules: [] });
  }

  rule(chain: string, body: string, comment?: string): void {
    const c = this.chains.get(chain);
    if (!c) throw new Error(`nftables render: rule for undeclared chain ${chain}`);
    c.rules.push(comment === undefined ? body : flat`${body} comment ${quote(comment)}`);
  }

  set(s: NftSet): void {
    if (!this.sets.has(s.name)) this.sets.set(s.name, s);
    if (s.kind === 'map' || !s.name.startsWith('affinity-')) {
      if (!this.elements.has(s.name)) this.elements.set(s.name, []);
    }
  }

  element(set: string, e: NftElement): void {
    let list = this.elements.get(set);
    if (!list) {
      if (!this.sharedSets?.has(set)) throw new Error(`nftables render: element for undeclared set ${set}`);
      this.elements.set(set, (list = []));
    }
    let keys = this.keys.get(set);
    if (!keys) this.keys.set(set, (keys = new Set()));
    // A key appears once per set; the first writer wins (as the kernel would refuse a second add).
    if (keys.has(e.key)) return;
    keys.add(e.key);
    list.push(e);
  }
}

/**
 * A frozen copy of exactly the list's size: an array grown by push keeps room for 17 elements
 * at least (~190 bytes for an endpoint chain's 2 or 3 rules, against ~70).
 */
function exact<T>(list: readonly T[]): readonly T[] {
  return Object.freeze(list.slice());
}

/** nft string literal. Service port names hold only [a-z0-9-./:], so no escaping is needed. */
export function quote(text: string): string {
  return `"${text.replace(/["\\]/g, '')}"`;
}


/** What a render needs from the options, computed once per renderer. */
interface RenderContext {
  readonly options: NftablesRenderOptions;
  readonly family: 'IPv4' | 'IPv6';
  readonly ipX: string;
  readonly addrType: string;
  readonly ifLocal: string | undefined;
  readonly ifNotLocal: string | undefined;
  readonly primaryNodeIP: string | undefined;
}

/** The elements one piece adds to one set or map. */
interface ElementList {
  readonly set: string;
  readonly list: readonly NftElement[];
}

/**
 * One service port's share of the model: arrays, not Maps (a Map costs ~300 bytes even when
 * small, and every service port keeps its fragment).
 */
interface PortFragment {
  /** Its chains and affinity sets. */
  readonly objects: ServicePortObjects;
  /** Its elements of the shared sets and maps. */
  readonly elements: readonly ElementList[];
  /** Whether each of its names spells out this port (PortIndexed can look them up). */
  readonly indexable: boolean;
  readonly noLocalInternal: number;
  readonly noLocalExternal: number;
}

/**
 * Renders snapshots one after another, re-rendering only the service ports whose ServicePort or
 * endpoint list is a different object than at the previous render (the snapshot keeps the very
 * same objects for ports that did not change) and reusing the rest. The result is always exactly
 * what a fresh render of the snapshot gives (renderNftables): only the work differs.
 */
export class NftablesRenderer {
  private readonly ctx: RenderContext;
  private readonly headerChains: ReadonlyMap<string, NftChain>;
  /** The chains that are no service port's (hooks, jumps, masquerading), the same in every model. */
  readonly fixedChains: readonly string[];
  private readonly headerSets: ReadonlyMap<string, NftSet>;
  private readonly headerElements: ReadonlyMap<string, readonly NftElement[]>;
  private readonly sharedSets: ReadonlySet<string>;
  private readonly absentSets: readonly string[];
  private readonly ports: PortCache<PortView, PortFragment>;
  /** Service ports rendered by the last call (for benches and tests). */
  lastRendered = 0;
  /**
   * The last render's fragments and elements: an endpoint change seldom changes any element,
   * and then the lists (and their key sets, a few MB at 10,000 services) are not made again.
   */
  private last: { readonly names: readonly ServicePortName[]; readonly fragments: readonly PortFragment[]; readonly elements: ReadonlyMap<string, readonly NftElement[]> } | undefined;

  constructor(options: NftablesRenderOptions) {
    const family = options.family;
    const v6 = family === 'IPv6';
    const ipX = v6 ? 'ip6' : 'ip';
    const addrType = v6 ? 'ipv6_addr' : 'ipv4_addr';
    const noLocalhost = v6 ? 'ip6 daddr != ::1' : 'ip daddr != 127.0.0.0/8';
    const mark = masqueradeMark(options.masqueradeBit);

    const npCIDRs = options.nodePortAddresses
      .map((t) => parseCIDR(t.trim()))
      .filter((c): c is NonNullable<typeof c> => c !== undefined && c.family === family);
    const matchAll = npCIDRs.length === 0 || npCIDRs.some((c) => c.cidr.endsWith('/0'));

    const localCIDR = options.clusterCIDRs.map((t) => parseCIDR(t.trim())).find((c) => c !== undefined && c.family === family);
    const ifLocal = localCIDR ? `${ipX} saddr ${localCIDR.cidr}` : undefined;
    const ifNotLocal = localCIDR ? `${ipX} saddr != ${localCIDR.cidr}` : undefined;

    const primaryNodeIP = options.primaryNodeIP ?? options.nodeIPs.find((ip) => {
      const c = canonicalIP(ip);
      return c !== undefined && c.family === family && !c.ip.startsWith('127.') && c.ip !== '::1';
    });

    const b = new ModelBuilder();
    const absentSets: string[] = [];

    // --- setupNFTables: base chains, jumps, top-level chains.
    for (const bc of BASE_CHAINS) b.chain(bc.name, { base: { type: bc.type, hook: bc.hook, priority: bc.priority } });
    for (const j of JUMP_CHAINS) {
      b.chain(j.dst);
      b.rule(j.src, j.match === '' ? `jump ${j.dst}` : `${j.match} jump ${j.dst}`);
    }
    b.chain(MARK_MASQ_CHAIN);
    b.rule(MARK_MASQ_CHAIN, `mark set mark or ${mark}`);
    b.rule(MASQUERADING_CHAIN, `mark and ${mark} == 0 return`);
    // Clear the mark so a packet that traverses the stack again is not masqueraded twice.
    b.rule(MASQUERADING_CHAIN, `mark set mark xor ${mark}`);
    b.rule(MASQUERADING_CHAIN, 'masquerade fully-random');

    b.set({ name: CLUSTER_IPS_SET, kind: 'set', type: addrType, comment: 'Active ClusterIPs' });
    b.set({ name: NODEPORT_IPS_SET, kind: 'set', type: addrType, comment: 'IPs that accept NodePort traffic' });
    if (matchAll) {
      absentSets.push(NODEPORT_IPS_SET);
    } else {
      for (const text of options.nodeIPs) {
        const c = canonicalIP(text);
        if (!c || c.family !== family) continue;
        if (c.ip.startsWith('127.') || c.ip === '::1') continue; // localhost NodePorts are not supported
        b.element(NODEPORT_IPS_SET, { key: c.ip });
      }
    }

    b.set({ name: NO_ENDPOINT_SERVICES_MAP, kind: 'map', type: `${addrType} . inet_proto . inet_service : verdict`, comment: 'vmap to drop or reject packets to services with no endpoints' });
    b.set({ name: NO_ENDPOINT_NODEPORTS_MAP, kind: 'map', type: 'inet_proto . inet_service : verdict', comment: 'vmap to drop or reject packets to service nodeports with no endpoints' });
    b.chain(REJECT_CHAIN, { comment: 'helper for @no-endpoint-services / @no-endpoint-nodeports' });
    b.rule(REJECT_CHAIN, 'reject');

    b.rule(SERVICE_ENDPOINTS_CHECK, `${ipX} daddr . meta l4proto . th dport vmap @${NO_ENDPOINT_SERVICES_MAP}`);
    b.rule(NODEPORT_ENDPOINTS_CHECK, matchAll
      ? `fib daddr type local ${noLocalhost} meta l4proto . th dport vmap @${NO_ENDPOINT_NODEPORTS_MAP}`
      : `${ipX} daddr @${NODEPORT_IPS_SET} meta l4proto . th dport vmap @${NO_ENDPOINT_NODEPORTS_MAP}`);

    b.rule(CLUSTER_IPS_CHECK, `${ipX} daddr @${CLUSTER_IPS_SET} reject`, 'Reject traffic to invalid ports of ClusterIPs');
    const serviceCIDRs = (options.serviceCIDRs ?? [])
      .map((t) => parseCIDR(t.trim()))
      .filter((c): c is NonNullable<typeof c> => c !== undefined && c.family === family)
      .map((c) => c.cidr);
    if (serviceCIDRs.length > 0) {
      b.rule(CLUSTER_IPS_CHECK, `${ipX} daddr { ${[...new Set(serviceCIDRs)].join(', ')} } drop`, 'Drop traffic to unallocated ClusterIPs');
    }

    b.set({ name: FIREWALL_IPS_MAP, kind: 'map', type: `${addrType} . inet_proto . inet_service : verdict`, comment: 'destinations that are subject to LoadBalancerSourceRanges' });
    b.rule(FIREWALL_CHECK, `${ipX} daddr . meta l4proto . th dport vmap @${FIREWALL_IPS_MAP}`);

    b.set({ name: SERVICE_IPS_MAP, kind: 'map', type: `${addrType} . inet_proto . inet_service : verdict`, comment: 'ClusterIP, ExternalIP and LoadBalancer IP traffic' });
    b.set({ name: SERVICE_NODEPORTS_MAP, kind: 'map', type: 'inet_proto . inet_service : verdict', comment: 'NodePort traffic' });
    b.rule(SERVICES_CHAIN, `${ipX} daddr . meta l4proto . th dport vmap @${SERVICE_IPS_MAP}`);
    b.rule(SERVICES_CHAIN, matchAll
      ? `fib daddr type local ${noLocalhost} meta l4proto . th dport vmap @${SERVICE_NODEPORTS_MAP}`
      : `${ipX} daddr @${NODEPORT_IPS_SET} meta l4proto . th dport vmap @${SERVICE_NODEPORTS_MAP}`);

    this.ctx = { options, family, ipX, addrType, ifLocal, ifNotLocal, primaryNodeIP };
    this.ports = new PortCache((sp, eps) => viewOf(sp, eps, family));
    this.headerChains = new Map(b.frozenChains().map((c) => [c.name, c]));
    this.fixedChains = Object.freeze([...this.headerChains.keys()]);
    this.headerSets = b.sets;
    this.headerElements = new Map(b.frozenElements().map((e) => [e.set, e.list]));
    this.sharedSets = new Set(b.elements.keys());
    this.absentSets = Object.freeze(absentSets);
  }

  render(snap: Snapshot): NftablesModel {
    const { ordered, topology } = this.ports.update(snap, this.ctx.options.nodeName);
    const { names, fragments, skipped, rendered } = this.ports.fragments(ordered, (view) => renderPort(this.ctx, view, this.sharedSets, topology));
    this.lastRendered = rendered;
    const last = this.last;
    let noLocalInternal = 0;
    let noLocalExternal = 0;
    let indexable = true;
    for (const f of fragments) {
      noLocalInternal += f.noLocalInternal;
      noLocalExternal += f.noLocalExternal;
      indexable &&= f.indexable;
    }
    const { chains, sets, servicePorts } = indexable ? this.indexed(names, fragments) : this.merged(names, fragments);
    const elements = last !== undefined && last.names === names && sameElementsAs(last.fragments, fragments) ? last.elements : this.elementsOf(fragments);
    this.last = { names, fragments, elements };
    return Object.freeze({
      family: this.ctx.family === 'IPv6' ? 'ip6' : 'ip',
      table: TABLE,
      chains,
      sets,
      elements,
      absentSets: this.absentSets,
      servicePorts,
      skipped,
      noLocalEndpoints: Object.freeze({ internal: noLocalInternal, external: noLocalExternal }),
    });
  }

  /**
   * The shared sets' elements: the fixed ones, then each port's in order; a key appears once per
   * set, the first port's (as the kernel would refuse a second add).
   */
  private elementsOf(fragments: readonly PortFragment[]): ReadonlyMap<string, readonly NftElement[]> {
    const lists = new Map<string, NftElement[]>();
    const keys = new Map<string, Set<string>>();
    for (const [name, l] of this.headerElements) {
      lists.set(name, [...l]);
      keys.set(name, new Set(l.map((e) => e.key)));
    }
    for (const f of fragments) {
      for (const { set: sn, list: els } of f.elements) {
        const l = lists.get(sn);
        const k = keys.get(sn);
        if (l === undefined || k === undefined) continue;
        for (const el of els) {
          if (k.has(el.key)) continue;
          k.add(el.key);
          l.push(el);
        }
      }
    }
    const elements = new Map<string, readonly NftElement[]>();
    for (const [name, l] of lists) elements.set(name, Object.freeze(l));
    return elements;
  }

  /** Chains and sets as views over the ports' own (no name is any other port's: see PortIndexed). */
  private indexed(names: readonly ServicePortName[], fragments: readonly PortFragment[]): Assembled {
    const objects = fragments.map((f) => f.objects);
    let chains = this.headerChains.size;
    let sets = this.headerSets.size;
    for (const o of objects) {
      chains += o.chains.length;
      sets += o.affinitySets.length;
    }
    const servicePorts = new SortedPorts(names, objects);
    return {
      chains: new PortIndexed(this.headerChains, servicePorts, 'chains', chains),
      sets: new PortIndexed(this.headerSets, servicePorts, 'sets', sets),
      servicePorts,
    };
  }

  /**
   * Chains and sets as Maps, for ports whose names may not spell them out (cut short, or made of
   * names holding `/` or `_`). Then two ports can make the same name: the first port declaring a
   * chain or set owns it, and a chain declared again gets the later port's rules appended, as a
   * single-pass render would do.
   */
  private merged(names: readonly ServicePortName[], fragments: readonly PortFragment[]): Assembled {
    const chains = new Map(this.headerChains);
    const sets = new Map(this.headerSets);
    const chainOwner = new Map<string, ServicePortName>();
    const setOwner = new Map<string, ServicePortName>();
    fragments.forEach((f, i) => {
      const name = names[i] as ServicePortName;
      for (const c of f.objects.chainObjects) {
        const had = chains.get(c.name);
        if (had === undefined) {
          chains.set(c.name, c);
          chainOwner.set(c.name, name);
        } else chains.set(c.name, Object.freeze({ ...had, rules: Object.freeze([...had.rules, ...c.rules]) }));
      }
      for (const s of f.objects.setObjects) {
        if (sets.has(s.name)) continue;
        sets.set(s.name, s);
        setOwner.set(s.name, name);
      }
    });
    const servicePorts = new Map<ServicePortName, ServicePortObjects>();
    fragments.forEach((f, i) => {
      const name = names[i] as ServicePortName;
      const o = f.objects;
      if (o.chainObjects.every((c) => chains.get(c.name) === c) && o.setObjects.every((s) => sets.get(s.name) === s)) {
        servicePorts.set(name, o);
        return;
      }
      // A name it shares: it owns what it declared first, with the rules appended since.
      const own = o.chains.filter((c) => chainOwner.get(c) === name);
      const ownSets = o.affinitySets.filter((s) => setOwner.get(s) === name);
      servicePorts.set(name, Object.freeze({
        chains: Object.freeze(own),
        affinitySets: Object.freeze(ownSets),
        chainObjects: Object.freeze(own.flatMap((c) => chains.get(c) ?? [])),
        setObjects: Object.freeze(ownSets.flatMap((s) => sets.get(s) ?? [])),
      }));
    });
    return { chains, sets, servicePorts };
  }
}

/** Whether two renders' fragments of the same ports have equal elements, in order (then so are the model's lists). */
function sameElementsAs(before: readonly PortFragment[], now: readonly PortFragment[]): boolean {
  if (before.length !== now.length) return false;
  for (let i = 0; i < now.length; i++) {
    const f = now[i] as PortFragment;
    const old = before[i] as PortFragment;
    if (f === old || f.elements === old.elements) continue;
    if (f.elements.length !== old.elements.length) return false;
    for (let j = 0; j < f.elements.length; j++) {
      const a = f.elements[j] as ElementList;
      const b = old.elements[j] as ElementList;
      if (a.set !== b.set || a.list.length !== b.list.length) return false;
      for (let k = 0; k < a.list.length; k++) {
        const x = a.list[k] as NftElement;
        const y = b.list[k] as NftElement;
        if (x.key !== y.key || x.value !== y.value || x.comment !== y.comment) return false;
      }
    }
  }
  return true;
}

/** A model's chains, sets and service ports. */
interface Assembled {
  readonly chains: ReadonlyMap<string, NftChain>;
  readonly sets: ReadonlyMap<string, NftSet>;
  readonly servicePorts: ReadonlyMap<ServicePortName, ServicePortObjects>;
}

/** A fresh render of one snapshot (same result as an NftablesRenderer's render of it). */
export function renderNftables(snap: Snapshot, options: NftablesRenderOptions): NftablesModel {
  return new NftablesRenderer(options).render(snap);
}

/** One service port's chains, affinity sets and shared-set elements. */
function renderPort(ctx: RenderContext, v: PortView, sharedSets: ReadonlySet<string>, topology: NodeTopology): PortFragment {
  const { options, ipX, addrType, ifLocal, ifNotLocal, primaryNodeIP } = ctx;
  const b = new ModelBuilder(sharedSets);
  let noLocalInternal = 0;
  let noLocalExternal = 0;
  const { sp } = v;
  const spn: string = sp.name;
  const proto = sp.protocol.toLowerCase();
  const port = String(sp.port);
  const names = serviceChainNames(sp.name, proto);
  const ownedChains: string[] = [];
  const ownedSets: string[] = [];
  const chain = (name: string): void => {
    if (!b.chains.has(name)) ownedChains.push(name);
    b.chain(name);
  };
  const element = (set: string, e: NftElement): void => b.element(set, e);
  // Each endpoint's names are hashed once (several rules use them).
  const endpointNamesByKey = new Map<string, { readonly chain: string; readonly affinitySet: string }>();
  const epNames = (e: Endpoint): { readonly chain: string; readonly affinitySet: string } => {
    let n = endpointNamesByKey.get(e.key);
    if (n === undefined) endpointNamesByKey.set(e.key, (n = endpointNames(sp.name, proto, e.key)));
    return n;
  };

  const externallyAccessible = sp.nodePort !== 0 || v.loadBalancerIPs.length > 0 || v.externalIPs.length > 0;
  const isLocal = (e: Endpoint): boolean => (options.nodeName !== '' ? e.nodeName === options.nodeName : e.isLocal);
  const cat = categorizeEndpoints(sp, v.endpoints, { isLocal, externallyAccessible, topology });
  const { clusterEndpoints, localEndpoints, usesClusterPolicyChain, usesLocalPolicyChain, hasInternalEndpoints, hasExternalEndpoints, usesExternalTrafficChain } = cat;
  const hasEndpoints = cat.hasAnyEndpoints;
  const reachable = cat.allReachable;

  for (const e of reachable) chain(epNames(e).chain);

  const clusterPolicyChain = names.cluster;
  if (usesClusterPolicyChain) chain(clusterPolicyChain);
  const localPolicyChain = names.local;
  if (usesLocalPolicyChain) chain(localPolicyChain);
  const internalTrafficChain = sp.internalPolicyLocal ? localPolicyChain : clusterPolicyChain;
  const externalPolicyChain = sp.externalPolicyLocal ? localPolicyChain : clusterPolicyChain;
  const externalTrafficChain = names.external;
  if (usesExternalTrafficChain) chain(externalTrafficChain);

  let internalVerdict = '';
  let externalVerdict = '';
  if (!hasEndpoints) {
    internalVerdict = flat`goto ${REJECT_CHAIN}`;
    externalVerdict = flat`goto ${REJECT_CHAIN}`;
  } else {
    if (!hasInternalEndpoints) {
      internalVerdict = 'drop';
      noLocalInternal = 1;
    }
    if (!hasExternalEndpoints) {
      externalVerdict = 'drop';
      noLocalExternal = 1;
    }
  }

  const key = (ip: string): string => flat`${ip} . ${proto} . ${port}`;
  element(CLUSTER_IPS_SET, { key: v.clusterIP });
  if (hasInternalEndpoints) {
    element(SERVICE_IPS_MAP, { key: key(v.clusterIP), value: flat`goto ${internalTrafficChain}` });
  } else {
    element(NO_ENDPOINT_SERVICES_MAP, { key: key(v.clusterIP), value: internalVerdict, comment: spn });
  }

  for (const ip of v.externalIPs) {
    if (hasEndpoints) element(SERVICE_IPS_MAP, { key: key(ip), value: flat`goto ${externalTrafficChain}` });
    if (!hasExternalEndpoints) element(NO_ENDPOINT_SERVICES_MAP, { key: key(ip), value: externalVerdict, comment: spn });
  }

  const usesFWChain = v.loadBalancerIPs.length > 0 && v.sourceRanges.length > 0;
  const fwChain = names.firewall;
  if (usesFWChain) {
    chain(fwChain);
    const sources = v.sourceRanges.map((r) => r.cidr);
    if (primaryNodeIP !== undefined && v.sourceRanges.some((r) => r.contains(primaryNodeIP))) {
      // A VIP-like LB IP that is local loops back with the LB IP as source.
      sources.push(...v.loadBalancerIPs);
    }
    b.rule(fwChain, flat`${ipX} saddr != { ${sources.join(', ')} } drop`);
  }
  for (const ip of v.loadBalancerIPs) {
    if (hasEndpoints) element(SERVICE_IPS_MAP, { key: key(ip), value: flat`goto ${externalTrafficChain}` });
    if (usesFWChain) element(FIREWALL_IPS_MAP, { key: key(ip), value: flat`goto ${fwChain}`, comment: spn });
  }
  if (!hasExternalEndpoints) {
    for (const ip of v.loadBalancerIPs) element(NO_ENDPOINT_SERVICES_MAP, { key: key(ip), value: externalVerdict, comment: spn });
  }

  if (sp.nodePort !== 0) {
    const npKey = flat`${proto} . ${sp.nodePort}`;
    // NodePorts are not subject to loadBalancerSourceRanges (upstream keeps it so).
    if (hasEndpoints) element(SERVICE_NODEPORTS_MAP, { key: npKey, value: flat`goto ${externalTrafficChain}` });
    if (!hasExternalEndpoints) element(NO_ENDPOINT_NODEPORTS_MAP, { key: npKey, value: externalVerdict, comment: spn });
  }

  // The chain is reached through the vmap keyed on address, protocol and port, so matching the
  // address is enough (upstream's newer rules leave out the port too).
  if (hasInternalEndpoints) {
    if (options.masqueradeAll) {
      b.rule(internalTrafficChain, flat`${ipX} daddr ${v.clusterIP} jump ${MARK_MASQ_CHAIN}`);
    } else if (ifNotLocal !== undefined) {
      // Off-cluster traffic routed to a service VIP may bounce off-node: masquerade it.
      b.rule(internalTrafficChain, flat`${ipX} daddr ${v.clusterIP} ${ifNotLocal} jump ${MARK_MASQ_CHAIN}`);
    }
  }

  if (usesExternalTrafficChain) {
    if (!sp.externalPolicyLocal) {
      // Endpoints may be on other nodes: masquerade so replies come back through this node.
      b.rule(externalTrafficChain, flat`jump ${MARK_MASQ_CHAIN}`);
    } else {
      if (ifLocal !== undefined) {
        // Pods reaching an external destination get Cluster policy (as if via the real LB).
        b.rule(externalTrafficChain, flat`${ifLocal} goto ${clusterPolicyChain}`, 'short-circuit pod traffic');
      }
      // The node itself: its source would be the (local) external IP, so masquerade, and use Cluster policy.
      b.rule(externalTrafficChain, flat`fib saddr type local jump ${MARK_MASQ_CHAIN}`, 'masquerade local traffic');
      b.rule(externalTrafficChain, flat`fib saddr type local goto ${clusterPolicyChain}`, 'short-circuit local traffic');
    }
    if (hasExternalEndpoints) b.rule(externalTrafficChain, flat`goto ${externalPolicyChain}`);
  }

  const affinity = sp.affinityTimeoutSeconds > 0;
  if (affinity) {
    for (const e of reachable) {
      const set = epNames(e).affinitySet;
      if (!b.sets.has(set)) ownedSets.push(set);
      // "dynamic": the kernel adds it anyway, and a later add without it would look like a flag change.
      b.set({ name: set, kind: 'set', type: addrType, flags: ['dynamic', 'timeout'], timeoutSeconds: sp.affinityTimeoutSeconds });
    }
  }

  const toEndpoints = (svcChain: string, eps: readonly Endpoint[]): void => {
    if (affinity) {
      for (const e of eps) {
        const n = epNames(e);
        b.rule(svcChain, flat`${ipX} saddr @${n.affinitySet} goto ${n.chain}`);
      }
    }
    const vmap = eps.map((e, i) => `${i} : goto ${epNames(e).chain}`).join(' , ');
    b.rule(svcChain, flat`numgen random mod ${eps.length} vmap { ${vmap} }`);
  };
  if (usesClusterPolicyChain) toEndpoints(clusterPolicyChain, clusterEndpoints);
  if (usesLocalPolicyChain) toEndpoints(localPolicyChain, localEndpoints);

  for (const e of reachable) {
    const n = epNames(e);
    // Hairpin: a pod reaching itself through the service must be SNATed.
    b.rule(n.chain, flat`${ipX} saddr ${canonicalIP(e.ip)?.ip ?? e.ip} jump ${MARK_MASQ_CHAIN}`);
    if (affinity) b.rule(n.chain, flat`update @${n.affinitySet} { ${ipX} saddr }`);
    b.rule(n.chain, flat`meta l4proto ${proto} dnat to ${e.key}`);
  }

  const objects: ServicePortObjects = Object.freeze({
    chains: exact(ownedChains),
    affinitySets: exact(ownedSets),
    chainObjects: Object.freeze(b.frozenChains()),
    setObjects: exact([...b.sets.values()]),
  });
  return { objects, elements: b.frozenElements(), indexable: spellsServicePort(sp.name), noLocalInternal, noLocalExternal };
}
