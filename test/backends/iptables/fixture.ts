/**
 * Shared fixtures for the iptables render tests. Addresses follow upstream's proxier_test
 * conventions (pods 10.0.0.0/8, service IPs 172.30.0.0/16, node 192.168.0.2, external IPs
 * 192.168.99.0/24, LB IPs 1.2.3.4 / 5.6.7.8, outside 203.0.113.0/24) so goldens can be read
 * side by side with upstream's expectations. Generator tests only: nothing is sent.
 */
import { SnapshotBuilder, type Snapshot } from '../../../src/core/snapshot.js';
import type { EndpointSliceObject, Protocol, ServiceObject, ServicePortSpec } from '../../../src/core/objects.js';
import type { IptablesRenderOptions } from '../../../src/backends/iptables/model.js';
import { renderIptables } from '../../../src/backends/iptables/render.js';
import { serializeFull } from '../../../src/backends/iptables/serialize.js';

export const NODE = 'test-node';

/** kproxy's defaults: localhost NodePorts off, --random-fully, no nfacct. */
export const OPTS: IptablesRenderOptions = {
  nodeName: NODE,
  nodeIPs: ['192.168.0.2'],
  nodePortAddresses: [],
  clusterCIDRs: ['10.0.0.0/8'],
  masqueradeAll: false,
  masqueradeBit: 14,
  localhostNodePorts: false,
  family: 'IPv4',
};

/** The settings of upstream's NewFakeProxier (localhost NodePorts on, nfacct counters present, no --random-fully). */
export const UPSTREAM_FAKE_OPTS: IptablesRenderOptions = { ...OPTS, localhostNodePorts: true, nfacct: true, randomFully: false };

export function port(name: string, p: number, protocol: Protocol = 'TCP', nodePort = 0): ServicePortSpec {
  return { name, protocol, port: p, targetPort: p, nodePort };
}

export function snapshot(objects: readonly (ServiceObject | EndpointSliceObject)[], nodeName = NODE): Snapshot {
  const b = new SnapshotBuilder(nodeName);
  for (const o of objects) {
    if (o.kind === 'Service') b.handle({ kind: 'Service', type: 'add', object: o });
    else b.handle({ kind: 'EndpointSlice', type: 'add', object: o });
  }
  return b.next();
}

export function text(objects: readonly (ServiceObject | EndpointSliceObject)[], opts: IptablesRenderOptions = OPTS): string {
  return serializeFull(renderIptables(snapshot(objects), opts));
}
