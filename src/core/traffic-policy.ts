import type { Endpoint } from './endpoints.js';
import type { ServicePort } from './service-port.js';

export interface CategorizedEndpoints {
  /** Endpoints for traffic that the internal/external "Cluster" policy may send anywhere. */
  readonly clusterEndpoints: readonly Endpoint[];
  /** Endpoints on this node, for "Local" policies. */
  readonly localEndpoints: readonly Endpoint[];
  /** Endpoints for traffic to the cluster IP (internalTrafficPolicy applied). */
  readonly internalEndpoints: readonly Endpoint[];
  /** Endpoints for traffic to node ports, external and load-balancer IPs (externalTrafficPolicy applied). */
  readonly externalEndpoints: readonly Endpoint[];
  /**
   * Whether any endpoint is usable (ready, or serving and terminating), as upstream's
   * hasAnyEndpoints: without one, traffic is REJECTed; with some but none local under a Local
   * policy, it is DROPped.
   */
  readonly hasAnyEndpoints: boolean;
  /** Every endpoint some traffic to this port may reach (the endpoint chains a kernel mode writes). */
  readonly allReachable: readonly Endpoint[];
  /** Whether any traffic uses the Cluster policy / the Local policy (upstream's usesClusterEndpoints, usesLocalEndpoints). */
  readonly usesClusterEndpoints: boolean;
  readonly usesLocalEndpoints: boolean;
  /**
   * The kernel modes' per-port policy chains, as upstream's proxiers choose them: a Cluster /
   * Local policy chain is written when some traffic uses it and it has an endpoint.
   */
  readonly usesClusterPolicyChain: boolean;
  readonly usesLocalPolicyChain: boolean;
  /**
   * Whether traffic to the cluster IP / to external destinations has an endpoint under its
   * policy (false: a Local policy with no local endpoint, traffic DROPped; or no endpoint at all).
   */
  readonly hasInternalEndpoints: boolean;
  readonly hasExternalEndpoints: boolean;
  /** The external-traffic chain is written (even with no external endpoint: local traffic short-circuits). */
  readonly usesExternalTrafficChain: boolean;
}

/** The node label that names this node's zone (upstream's v1.LabelTopologyZone). */
export const TOPOLOGY_ZONE_LABEL = 'topology.kubernetes.io/zone';

/** Which topology hints a service port's Cluster-policy endpoints follow (upstream's topology modes). */
export type TopologyMode = '' | 'PreferSameZone' | 'PreferSameNode';

/** Where this node is, for topology hints. */
export interface NodeTopology {
  readonly nodeName: string;
  /** The node's topology.kubernetes.io/zone label; '' when unknown. */
  readonly zone: string;
}

/** This node's topology from its Node object (absent before the Node is read: no zone). */
export function nodeTopology(nodeName: string, node: { readonly labels: Readonly<Record<string, string>> } | undefined): NodeTopology {
  return { nodeName, zone: node?.labels[TOPOLOGY_ZONE_LABEL] ?? '' };
}

function hinted(hints: readonly string[] | undefined, name: string): boolean {
  return hints !== undefined && name !== '' && hints.includes(name);
}

/**
 * Upstream's topologyModeFromHints. Only ready endpoints are considered. Node hints win when
 * every ready endpoint has one and some endpoint is hinted for this node; otherwise zone hints
 * apply when every ready endpoint has one and some endpoint is hinted for this node's zone;
 * otherwise no topology. (The EndpointSlice controller writes hints only for services that ask
 * for them, through trafficDistribution or the service.kubernetes.io/topology-mode annotation,
 * so, as in current upstream, the proxy follows the hints and does not read the annotation.)
 */
export function topologyMode(endpoints: readonly Endpoint[], topo: NodeTopology | undefined): TopologyMode {
  if (topo === undefined) return '';
  let anyReady = false;
  let allNodeHints = true;
  let forNode = false;
  let allZoneHints = true;
  let forZone = false;
  for (const e of endpoints) {
    if (!e.ready) continue;
    anyReady = true;
    if (e.nodeHints === undefined || e.nodeHints.length === 0) allNodeHints = false;
    else if (hinted(e.nodeHints, topo.nodeName)) forNode = true;
    if (e.zoneHints === undefined || e.zoneHints.length === 0) allZoneHints = false;
    else if (hinted(e.zoneHints, topo.zone)) forZone = true;
  }
  if (!anyReady) return '';
  if (allNodeHints && forNode) return 'PreferSameNode';
  if (allZoneHints && forZone) return 'PreferSameZone';
  return '';
}

function availableForTopology(e: Endpoint, mode: TopologyMode, topo: NodeTopology | undefined): boolean {
  switch (mode) {
    case '': return true;
    case 'PreferSameNode': return hinted(e.nodeHints, topo?.nodeName ?? '');
    case 'PreferSameZone': return hinted(e.zoneHints, topo?.zone ?? '');
  }
}

/**
 * Upstream's rule without topology: use ready endpoints; when none is ready, fall back to
 * endpoints that are serving and terminating. Local policies do the same among the endpoints
 * on this node.
 */
export function usable(endpoints: readonly Endpoint[]): Endpoint[] {
  const ready = endpoints.filter((e) => e.ready);
  if (ready.length > 0) return ready;
  return endpoints.filter((e) => e.serving && e.terminating);
}

export interface CategorizeOptions {
  /** Which endpoints run on this node (default: the snapshot's `isLocal`). */
  readonly isLocal?: (e: Endpoint) => boolean;
  /** Whether the port has node ports, external or load-balancer IPs (default: from the port). */
  readonly externallyAccessible?: boolean;
  /** This node's name and zone, for topology hints (default: hints are not applied). */
  readonly topology?: NodeTopology;
}

/**
 * Upstream's CategorizeEndpoints. Cluster endpoints are computed only when some traffic uses
 * the Cluster policy and local ones only when some uses Local (an unused category is empty).
 * Topology hints narrow the Cluster endpoints only (Local policies ignore them); when no ready
 * endpoint exists anywhere, serving-and-terminating ones are used regardless of topology.
 * allReachable is every endpoint some traffic may reach: the union of the two categories.
 */
export function categorizeEndpoints(sp: ServicePort, endpoints: readonly Endpoint[], opts: CategorizeOptions = {}): CategorizedEndpoints {
  const isLocal = opts.isLocal ?? ((e: Endpoint): boolean => e.isLocal);
  const externallyAccessible = opts.externallyAccessible ?? (sp.nodePort !== 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0);
  const usesClusterEndpoints = !sp.internalPolicyLocal || externallyAccessible;
  const usesLocalEndpoints = sp.internalPolicyLocal || (sp.externalPolicyLocal && externallyAccessible);
  let clusterEndpoints: readonly Endpoint[] = [];
  let mode: TopologyMode = '';
  if (usesClusterEndpoints) {
    mode = topologyMode(endpoints, opts.topology);
    clusterEndpoints = endpoints.filter((e) => e.ready && availableForTopology(e, mode, opts.topology));
    // Topology was chosen only if some ready endpoint matched it, so an empty list here means
    // no endpoint is ready anywhere.
    if (clusterEndpoints.length === 0) clusterEndpoints = endpoints.filter((e) => e.serving && e.terminating);
  }
  const localEndpoints = usesLocalEndpoints ? usable(endpoints.filter(isLocal)) : [];
  let allReachable: readonly Endpoint[];
  if (!usesLocalEndpoints) allReachable = clusterEndpoints;
  else if (!usesClusterEndpoints) allReachable = localEndpoints;
  else if (mode === '' && localEndpoints.every((e) => e.ready)) allReachable = clusterEndpoints;
  else allReachable = [...clusterEndpoints, ...localEndpoints.filter((l) => !clusterEndpoints.some((c) => c.key === l.key))];
  const hasAnyEndpoints = endpoints.some((e) => e.ready || (e.serving && e.terminating));
  return {
    clusterEndpoints,
    localEndpoints,
    allReachable,
    usesClusterEndpoints,
    usesLocalEndpoints,
    internalEndpoints: sp.internalPolicyLocal ? localEndpoints : clusterEndpoints,
    externalEndpoints: sp.externalPolicyLocal ? localEndpoints : clusterEndpoints,
    hasAnyEndpoints,
    usesClusterPolicyChain: usesClusterEndpoints && clusterEndpoints.length > 0,
    usesLocalPolicyChain: usesLocalEndpoints && localEndpoints.length > 0,
    hasInternalEndpoints: hasAnyEndpoints && !(sp.internalPolicyLocal && localEndpoints.length === 0),
    hasExternalEndpoints: hasAnyEndpoints && !(sp.externalPolicyLocal && localEndpoints.length === 0),
    usesExternalTrafficChain: hasAnyEndpoints && externallyAccessible,
  };
}
