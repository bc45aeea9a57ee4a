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
}

/**
 * Upstream's rule (CategorizeEndpoints, without topology hints): use ready endpoints; when
 * none is ready, fall back to endpoints that are serving and terminating. Local policies do
 * the same among the endpoints on this node.
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
}

/**
 * Upstream's CategorizeEndpoints (without topology hints). Cluster endpoints are computed only
 * when some traffic uses the Cluster policy and local ones only when some uses Local (an unused
 * category is empty); allReachable is every endpoint some traffic may reach, with serving-but-
 * terminating local endpoints added when a Local policy falls back to them.
 */
export function categorizeEndpoints(sp: ServicePort, endpoints: readonly Endpoint[], opts: CategorizeOptions = {}): CategorizedEndpoints {
  const isLocal = opts.isLocal ?? ((e: Endpoint): boolean => e.isLocal);
  const externallyAccessible = opts.externallyAccessible ?? (sp.nodePort !== 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0);
  const usesClusterEndpoints = !sp.internalPolicyLocal || externallyAccessible;
  const usesLocalEndpoints = sp.internalPolicyLocal || (sp.externalPolicyLocal && externallyAccessible);
  const clusterEndpoints = usesClusterEndpoints ? usable(endpoints) : [];
  const localEndpoints = usesLocalEndpoints ? usable(endpoints.filter(isLocal)) : [];
  let allReachable: readonly Endpoint[];
  if (!usesLocalEndpoints) allReachable = clusterEndpoints;
  else if (!usesClusterEndpoints) allReachable = localEndpoints;
  else if (localEndpoints.every((e) => e.ready)) allReachable = clusterEndpoints;
  else allReachable = [...clusterEndpoints, ...localEndpoints.filter((l) => !clusterEndpoints.some((c) => c.key === l.key))];
  return {
    clusterEndpoints,
    localEndpoints,
    allReachable,
    usesClusterEndpoints,
    usesLocalEndpoints,
    internalEndpoints: sp.internalPolicyLocal ? localEndpoints : clusterEndpoints,
    externalEndpoints: sp.externalPolicyLocal ? localEndpoints : clusterEndpoints,
    hasAnyEndpoints: endpoints.some((e) => e.ready || (e.serving && e.terminating)),
  };
}
