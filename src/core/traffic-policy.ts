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

export function categorizeEndpoints(sp: ServicePort, endpoints: readonly Endpoint[]): CategorizedEndpoints {
  const clusterEndpoints = usable(endpoints);
  const localEndpoints = usable(endpoints.filter((e) => e.isLocal));
  return {
    clusterEndpoints,
    localEndpoints,
    internalEndpoints: sp.internalPolicyLocal ? localEndpoints : clusterEndpoints,
    externalEndpoints: sp.externalPolicyLocal ? localEndpoints : clusterEndpoints,
    hasAnyEndpoints: endpoints.some((e) => e.ready || (e.serving && e.terminating)),
  };
}
