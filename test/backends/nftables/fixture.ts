/**
 * Shared fixtures for the nftables render tests. Addresses follow upstream's proxier_test
 * conventions (pods 10.0.0.0/8, service IPs 172.30.0.0/16, node 192.168.0.2, external IPs
 * 192.168.99.0/24, LB IPs 1.2.3.4 / 5.6.7.8), so goldens read side by side with upstream's
 * expectations. Generator tests only: nothing is sent.
 */
import { SnapshotBuilder, type Snapshot } from '../../../src/core/snapshot.js';
import type { EndpointSliceObject, Protocol, ServiceObject, ServicePortSpec } from '../../../src/core/objects.js';
import type { NftablesRenderOptions } from '../../../src/backends/nftables/model.js';
import { renderNftables } from '../../../src/backends/nftables/render.js';
import { serializeFull } from '../../../src/backends/nftables/serialize.js';

export const NODE = 'test-node';

export const OPTS: NftablesRenderOptions = {
  nodeName: NODE,
  nodeIPs: ['192.168.0.2'],
  nodePortAddresses: [],
  clusterCIDRs: ['10.0.0.0/8'],
  masqueradeAll: false,
  masqueradeBit: 14,
  family: 'IPv4',
};

export type Obj = ServiceObject | EndpointSliceObject;

export function port(name: string, p: number, protocol: Protocol = 'TCP', nodePort = 0): ServicePortSpec {
  return { name, protocol, port: p, targetPort: p, nodePort };
}

export function builder(objects: readonly Obj[], nodeName = NODE): SnapshotBuilder {
  const b = new SnapshotBuilder(nodeName);
  for (const o of objects) {
    if (o.kind === 'Service') b.handle({ kind: 'Service', type: 'add', object: o });
    else b.handle({ kind: 'EndpointSlice', type: 'add', object: o });
  }
  return b;
}

export function snapshot(objects: readonly Obj[], nodeName = NODE): Snapshot {
  return builder(objects, nodeName).next();
}

export function text(objects: readonly Obj[], opts: NftablesRenderOptions = OPTS): string {
  return serializeFull(renderNftables(snapshot(objects), opts)).text;
}
