/**
 * The validated, typed forms of the API objects kproxy consumes. Sources (the Kubernetes API
 * and manifest files) convert raw objects into these; everything downstream sees only these.
 * All fields are defaulted as the API server would default them.
 */
import type { NamespacedName } from './ids.js';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';

/** Where an object came from, for error messages: "file.yaml#2" or "api". */
export interface Origin {
  readonly source: string;
  readonly file?: string;
  readonly document?: number;
}

export interface ServicePortSpec {
  readonly name: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** Numeric target port, or a named container port; informational (endpoints carry the real port). */
  readonly targetPort: number | string;
  /** 0 when the port has none. */
  readonly nodePort: number;
}

export interface ServiceObject {
  readonly kind: 'Service';
  readonly id: NamespacedName;
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly type: ServiceType;
  /** Primary cluster IP; '' when unset, 'None' for headless services. */
  readonly clusterIP: string;
  readonly clusterIPs: readonly string[];
  readonly ports: readonly ServicePortSpec[];
  readonly externalIPs: readonly string[];
  /** status.loadBalancer.ingress[].ip */
  readonly loadBalancerIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly string[];
  readonly sessionAffinity: 'None' | 'ClientIP';
  /** sessionAffinityConfig.clientIP.timeoutSeconds, defaulted to 10800 for ClientIP. */
  readonly sessionAffinityTimeoutSeconds: number;
  readonly externalTrafficPolicy: TrafficPolicy;
  readonly internalTrafficPolicy: TrafficPolicy;
  /** 0 when none. */
  readonly healthCheckNodePort: number;
  readonly origin: Origin;
}

export interface EndpointSlicePort {
  /** '' for an unnamed port. */
  readonly name: string;
  readonly protocol: Protocol;
  readonly port: number;
}

export interface EndpointConditions {
  /** Defaulted as upstream: ready=true when unset; serving=ready when unset; terminating=false when unset. */
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
}

export interface SliceEndpoint {
  readonly addresses: readonly string[];
  readonly conditions: EndpointConditions;
  readonly nodeName?: string;
  readonly zone?: string;
  readonly hostname?: string;
  /** hints.forZones[].name */
  readonly zoneHints?: readonly string[];
  /** hints.forNodes[].name */
  readonly nodeHints?: readonly string[];
}

export interface EndpointSliceObject {
  readonly kind: 'EndpointSlice';
  readonly id: NamespacedName;
  readonly namespace: string;
  readonly name: string;
  /** The kubernetes.io/service-name label. */
  readonly serviceName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly addressType: 'IPv4' | 'IPv6' | 'FQDN';
  readonly ports: readonly EndpointSlicePort[];
  readonly endpoints: readonly SliceEndpoint[];
  readonly origin: Origin;
}

export interface NodeObject {
  readonly kind: 'Node';
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly addresses: readonly { readonly type: string; readonly address: string }[];
  readonly podCIDRs: readonly string[];
  /** True when the node carries the ToBeDeletedByClusterAutoscaler taint. */
  readonly toBeDeleted: boolean;
  /** True when metadata.deletionTimestamp is set: the Node is being deleted. */
  readonly deleting: boolean;
  readonly origin: Origin;
}

export type ApiObject = ServiceObject | EndpointSliceObject | NodeObject;
