import { SCHEDULER_ANNOTATION, isSchedulerName, type SchedulerName } from './annotations.js';
import { servicePortName, type NamespacedName, type ServicePortName } from './ids.js';
import type { Protocol, ServiceObject } from './objects.js';

/** One port of one Service: the unit every backend programs (upstream's ServicePort). */
export interface ServicePort {
  readonly name: ServicePortName;
  readonly service: NamespacedName;
  readonly portName: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** '' when the service has no cluster IP (it may still have node ports or external IPs). */
  readonly clusterIP: string;
  /** 0 when none. */
  readonly nodePort: number;
  readonly externalIPs: readonly string[];
  readonly loadBalancerIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly string[];
  /** 0 when sessionAffinity is None. */
  readonly affinityTimeoutSeconds: number;
  readonly externalPolicyLocal: boolean;
  readonly internalPolicyLocal: boolean;
  /** 0 when none. */
  readonly healthCheckNodePort: number;
  /** From the kproxy.io/scheduler annotation; undefined means the configured default. */
  readonly scheduler: SchedulerName | undefined;
}

/**
 * The service ports kube-proxy programs for a Service. Like upstream, ExternalName and
 * headless services (clusterIP None) have none.
 */
export function servicePortsOf(svc: ServiceObject): ServicePort[] {
  if (svc.type === 'ExternalName' || svc.clusterIP === 'None') return [];
  const schedAnn = svc.annotations[SCHEDULER_ANNOTATION];
  const scheduler = schedAnn !== undefined && isSchedulerName(schedAnn) ? schedAnn : undefined;
  const externallyReachable = svc.type === 'NodePort' || svc.type === 'LoadBalancer' || svc.externalIPs.length > 0;
  return svc.ports.map((p): ServicePort => Object.freeze({
    name: servicePortName(svc.id, p.name),
    service: svc.id,
    portName: p.name,
    protocol: p.protocol,
    port: p.port,
    clusterIP: svc.clusterIP,
    nodePort: svc.type === 'NodePort' || svc.type === 'LoadBalancer' ? p.nodePort : 0,
    externalIPs: svc.externalIPs,
    loadBalancerIPs: svc.type === 'LoadBalancer' ? svc.loadBalancerIPs : [],
    loadBalancerSourceRanges: svc.type === 'LoadBalancer' ? svc.loadBalancerSourceRanges : [],
    affinityTimeoutSeconds: svc.sessionAffinity === 'ClientIP' ? svc.sessionAffinityTimeoutSeconds : 0,
    // Upstream: externalTrafficPolicy only applies to externally reachable services.
    externalPolicyLocal: externallyReachable && svc.externalTrafficPolicy === 'Local',
    internalPolicyLocal: svc.internalTrafficPolicy === 'Local',
    healthCheckNodePort: svc.type === 'LoadBalancer' && svc.externalTrafficPolicy === 'Local' ? svc.healthCheckNodePort : 0,
    scheduler,
  }));
}
