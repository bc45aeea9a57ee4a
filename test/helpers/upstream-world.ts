/**
 * Generator-test fixtures shared by every kernel mode's render tests. Addresses follow upstream's
 * proxier_test conventions (pods 10.0.0.0/8, service IPs 172.30.0.0/16, node 192.168.0.2,
 * external IPs 192.168.99.0/24, LB IPs 1.2.3.4 / 5.6.7.8, outside 203.0.113.0/24) so goldens
 * read side by side with upstream's expectations. Nothing here sends packets.
 */
import type { KernelRenderOptions } from '../../src/backends/backend.js';
import type { EndpointSliceObject, NodeObject, Protocol, ServiceObject, ServicePortSpec } from '../../src/core/objects.js';
import type { SourceEvent } from '../../src/core/events.js';
import { SnapshotBuilder, type Snapshot } from '../../src/core/snapshot.js';
import { ep, slice, svc } from './objects.js';

export const NODE = 'test-node';

export const BASE_OPTS: KernelRenderOptions = {
  nodeName: NODE,
  nodeIPs: ['192.168.0.2'],
  nodePortAddresses: [],
  clusterCIDRs: ['10.0.0.0/8'],
  masqueradeAll: false,
  masqueradeBit: 14,
  family: 'IPv4',
};

/** What a test world holds; a Node (this node's, for its labels) is optional. */
export type Obj = ServiceObject | EndpointSliceObject | NodeObject;

export function port(name: string, p: number, protocol: Protocol = 'TCP', nodePort = 0): ServicePortSpec {
  return { name, protocol, port: p, targetPort: p, nodePort };
}

/** The source event that adds an object. */
export function addEvent(o: Obj): SourceEvent {
  if (o.kind === 'Service') return { kind: 'Service', type: 'add', object: o };
  if (o.kind === 'Node') return { kind: 'Node', type: 'add', object: o };
  return { kind: 'EndpointSlice', type: 'add', object: o };
}

export function builder(objects: readonly Obj[], nodeName = NODE): SnapshotBuilder {
  const b = new SnapshotBuilder(nodeName);
  for (const o of objects) b.handle(addEvent(o));
  return b;
}

export function snapshot(objects: readonly Obj[], nodeName = NODE): Snapshot {
  return builder(objects, nodeName).next();
}

/** Upstream's TestOverallIPTablesRules / TestOverallNFTablesRules world: six services covering most features. */
export function overall(): Obj[] {
  return [
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
    svc('ns2', 'svc2', {
      type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42',
      ports: [port('p80', 80, 'TCP', 3001)], loadBalancerIPs: ['1.2.3.4'], externalIPs: ['192.168.99.22'], healthCheckNodePort: 30000,
    }),
    svc('ns3', 'svc3', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [port('p80', 80, 'TCP', 3003)] }),
    svc('ns4', 'svc4', { type: 'NodePort', clusterIP: '172.30.0.44', externalIPs: ['192.168.99.33'], ports: [port('p80', 80)] }),
    svc('ns5', 'svc5', {
      type: 'LoadBalancer', clusterIP: '172.30.0.45', ports: [port('p80', 80, 'TCP', 3002)], loadBalancerIPs: ['5.6.7.8'],
      healthCheckNodePort: 30000, loadBalancerSourceRanges: [' 203.0.113.0/25'], sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 10800,
    }),
    svc('ns6', 'svc6', { clusterIP: '172.30.0.46', ports: [port('p80', 80)] }),
    slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], { portName: 'p80', port: 80 }),
    // Not on this node (no nodeName), so svc2's Local policy has no local endpoint.
    slice('ns2', 'svc2-1', 'svc2', [ep('10.180.0.2')], { portName: 'p80', port: 80 }),
    slice('ns3', 'svc3-1', 'svc3', [ep('10.180.0.3')], { portName: 'p80', port: 80 }),
    slice('ns4', 'svc4-1', 'svc4', [ep('10.180.0.4'), ep('10.180.0.5', { nodeName: NODE })], { portName: 'p80', port: 80 }),
    slice('ns5', 'svc5-1', 'svc5', [ep('10.180.0.3')], { portName: 'p80', port: 80 }),
  ];
}
