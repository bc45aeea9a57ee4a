/** Builders for typed API objects in tests (defaults as the API server applies them). */
import { namespacedName } from '../../src/core/ids.js';
import type { EndpointSliceObject, NodeObject, Protocol, ServiceObject, SliceEndpoint } from '../../src/core/objects.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export function svc(ns: string, name: string, over: Partial<Mutable<ServiceObject>> = {}): ServiceObject {
  const clusterIP = over.clusterIP ?? '198.18.100.1';
  return {
    kind: 'Service', id: namespacedName(ns, name), namespace: ns, name, labels: {}, annotations: {},
    type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP],
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }],
    externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [],
    sessionAffinity: 'None', sessionAffinityTimeoutSeconds: 0,
    externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', healthCheckNodePort: 0,
    origin: { source: 'test' },
    ...over,
  };
}

export function ep(ip: string, over: Partial<Mutable<SliceEndpoint>> & { ready?: boolean; serving?: boolean; terminating?: boolean } = {}): SliceEndpoint {
  const ready = over.ready ?? true;
  const { ready: _r, serving: _s, terminating: _t, ...rest } = over;
  return {
    addresses: [ip],
    conditions: { ready, serving: over.serving ?? ready, terminating: over.terminating ?? false },
    ...rest,
  };
}

export function slice(
  ns: string, name: string, service: string, endpoints: SliceEndpoint[],
  opts: { port?: number; portName?: string; protocol?: Protocol; annotations?: Record<string, string> } = {},
): EndpointSliceObject {
  return {
    kind: 'EndpointSlice', id: namespacedName(ns, name), namespace: ns, name, serviceName: service,
    labels: { 'kubernetes.io/service-name': service }, annotations: opts.annotations ?? {}, addressType: 'IPv4',
    ports: [{ name: opts.portName ?? 'http', protocol: opts.protocol ?? 'TCP', port: opts.port ?? 8080 }],
    endpoints, origin: { source: 'test' },
  };
}

export function node(name: string, over: Partial<Mutable<NodeObject>> = {}): NodeObject {
  return { kind: 'Node', name, labels: {}, addresses: [], podCIDRs: [], toBeDeleted: false, deleting: false, origin: { source: 'test' }, ...over };
}
