/**
 * categorizeEndpoints against upstream's CategorizeEndpoints behaviour (pkg/proxy/topology.go
 * and its test table, restated here): topology hints, traffic policies, terminating fallback.
 * Every backend uses this one function, so these cases hold for all modes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Endpoint } from '../../src/core/endpoints.js';
import { namespacedName, servicePortName } from '../../src/core/ids.js';
import type { ServicePort } from '../../src/core/service-port.js';
import { SnapshotBuilder } from '../../src/core/snapshot.js';
import { categorizeEndpoints, nodeTopology, topologyMode, TOPOLOGY_ZONE_LABEL } from '../../src/core/traffic-policy.js';
import { ep, node, slice, svc } from '../helpers/objects.js';

const NODE = 'node-1';

interface EpSpec {
  readonly ready?: boolean;
  readonly serving?: boolean;
  readonly terminating?: boolean;
  readonly local?: boolean;
  readonly zones?: readonly string[];
  readonly nodes?: readonly string[];
}

function endpoint(key: string, s: EpSpec = {}): Endpoint {
  const [ip = '', port = '80'] = key.split(':');
  const ready = s.ready ?? true;
  return {
    key, ip, port: Number(port), ready, serving: s.serving ?? ready, terminating: s.terminating ?? false,
    nodeName: s.local === true ? NODE : 'elsewhere', zone: undefined, isLocal: s.local === true, weight: 1,
    ...(s.zones ? { zoneHints: s.zones } : {}),
    ...(s.nodes ? { nodeHints: s.nodes } : {}),
  };
}

function port(over: Partial<{ internalPolicyLocal: boolean; externalPolicyLocal: boolean; nodePort: number }> = {}): ServicePort {
  return {
    name: servicePortName(namespacedName('ns', 'svc'), 'p'), service: namespacedName('ns', 'svc'), portName: 'p',
    protocol: 'TCP', port: 80, clusterIP: '198.18.100.1', nodePort: over.nodePort ?? 0, externalIPs: [], loadBalancerIPs: [],
    loadBalancerSourceRanges: [], affinityTimeoutSeconds: 0, externalPolicyLocal: over.externalPolicyLocal ?? false,
    internalPolicyLocal: over.internalPolicyLocal ?? false, healthCheckNodePort: 0, scheduler: undefined,
  };
}

interface Case {
  readonly name: string;
  /** The node's zone label; undefined: the node has no such label. */
  readonly zone?: string;
  readonly port?: Parameters<typeof port>[0];
  readonly endpoints: [string, EpSpec][];
  /** undefined: the port never uses that category. */
  readonly cluster: string[] | undefined;
  readonly local: string[] | undefined;
  /** Defaults to whichever of cluster/local is used, when only one is. */
  readonly all?: string[];
  /** hasAnyEndpoints although nothing is reachable from this node. */
  readonly onlyRemote?: boolean;
}

const A = ['zone-a'];
const B = ['zone-b'];
const C = ['zone-c'];

const CASES: Case[] = [
  {
    name: 'topology: every endpoint hinted, node zone known, endpoints for it: only those',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A }], ['10.1.2.4:80', { zones: B }], ['10.1.2.5:80', { zones: C }], ['10.1.2.6:80', { zones: A }]],
    cluster: ['10.1.2.3:80', '10.1.2.6:80'], local: undefined,
  },
  {
    name: 'externalTrafficPolicy Local: topology ignored for Local endpoints',
    zone: 'zone-a', port: { externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [['10.1.2.3:80', { zones: A, local: true }], ['10.1.2.4:80', { zones: B, local: true }], ['10.1.2.5:80', { zones: C }], ['10.1.2.6:80', { zones: A }]],
    cluster: ['10.1.2.3:80', '10.1.2.6:80'], local: ['10.1.2.3:80', '10.1.2.4:80'], all: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
  },
  {
    name: 'internalTrafficPolicy Local: topology ignored for Local endpoints',
    zone: 'zone-a', port: { internalPolicyLocal: true, nodePort: 8080 },
    endpoints: [['10.1.2.3:80', { zones: A, local: true }], ['10.1.2.4:80', { zones: B, local: true }], ['10.1.2.5:80', { zones: C }], ['10.1.2.6:80', { zones: A }]],
    cluster: ['10.1.2.3:80', '10.1.2.6:80'], local: ['10.1.2.3:80', '10.1.2.4:80'], all: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
  },
  { name: 'no node labels: no filtering', endpoints: [['10.1.2.3:80', { zones: A }]], cluster: ['10.1.2.3:80'], local: undefined },
  { name: 'empty zone label: no filtering', zone: '', endpoints: [['10.1.2.3:80', { zones: A }]], cluster: ['10.1.2.3:80'], local: undefined },
  { name: 'node in a zone no endpoint is hinted for: no filtering', zone: 'zone-b', endpoints: [['10.1.2.3:80', { zones: A }]], cluster: ['10.1.2.3:80'], local: undefined },
  {
    name: 'an unready endpoint in the zone is not used',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A }], ['10.1.2.4:80', { zones: B }], ['10.1.2.5:80', { zones: C }], ['10.1.2.6:80', { zones: A, ready: false }]],
    cluster: ['10.1.2.3:80'], local: undefined,
  },
  {
    name: 'only unready endpoints in the zone: no filtering',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A, ready: false }], ['10.1.2.4:80', { zones: B }], ['10.1.2.5:80', { zones: C }], ['10.1.2.6:80', { zones: A, ready: false }]],
    cluster: ['10.1.2.4:80', '10.1.2.5:80'], local: undefined,
  },
  {
    name: 'a ready endpoint without a hint: no filtering',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A }], ['10.1.2.4:80', { zones: B }], ['10.1.2.5:80', {}], ['10.1.2.6:80', { zones: A }]],
    cluster: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.5:80', '10.1.2.6:80'], local: undefined,
  },
  {
    name: 'an unready endpoint without a hint does not disable topology',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A }], ['10.1.2.4:80', { zones: B }], ['10.1.2.5:80', { ready: false }]],
    cluster: ['10.1.2.3:80'], local: undefined,
  },
  {
    name: 'several hints per endpoint: any endpoint hinted for the zone',
    zone: 'zone-c',
    endpoints: [['10.1.2.3:80', { zones: ['zone-a', 'zone-b', 'zone-c'] }], ['10.1.2.4:80', { zones: ['zone-b', 'zone-c'] }], ['10.1.2.5:80', { zones: ['zone-b', 'zone-d'] }], ['10.1.2.6:80', { zones: C }]],
    cluster: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'], local: undefined,
  },
  {
    name: 'topology and localness disagree: allReachable merges both',
    zone: 'zone-a', port: { externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [['10.0.0.0:80', { zones: A, local: true }], ['10.0.0.1:80', { zones: B, local: true }], ['10.0.0.2:80', { zones: A }], ['10.0.0.3:80', { zones: B }]],
    cluster: ['10.0.0.0:80', '10.0.0.2:80'], local: ['10.0.0.0:80', '10.0.0.1:80'], all: ['10.0.0.0:80', '10.0.0.1:80', '10.0.0.2:80'],
  },
  {
    name: 'node hints: every ready endpoint has one and one is for this node: only those',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A, nodes: [NODE] }], ['10.1.2.4:80', { zones: A, nodes: ['node-2'] }], ['10.1.2.5:80', { zones: B, nodes: ['node-3'] }]],
    cluster: ['10.1.2.3:80'], local: undefined,
  },
  {
    name: 'node hints for other nodes only: zone hints apply',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A, nodes: ['node-2'] }], ['10.1.2.4:80', { zones: A, nodes: ['node-2'] }], ['10.1.2.5:80', { zones: B, nodes: ['node-3'] }]],
    cluster: ['10.1.2.3:80', '10.1.2.4:80'], local: undefined,
  },
  {
    name: 'an endpoint without a node hint: zone hints apply',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: A, nodes: [NODE] }], ['10.1.2.4:80', { zones: A }], ['10.1.2.5:80', { zones: B, nodes: ['node-3'] }]],
    cluster: ['10.1.2.3:80', '10.1.2.4:80'], local: undefined,
  },
  {
    name: 'no ready endpoint anywhere: serving-terminating ones, topology ignored',
    zone: 'zone-a',
    endpoints: [['10.1.2.3:80', { zones: B, ready: false, serving: true, terminating: true }], ['10.1.2.4:80', { zones: A, ready: false, serving: false, terminating: true }]],
    cluster: ['10.1.2.3:80'], local: undefined,
  },
  { name: 'internalTrafficPolicy Local, no endpoints', port: { internalPolicyLocal: true }, endpoints: [], cluster: undefined, local: [] },
  {
    name: 'internalTrafficPolicy Local, all endpoints remote',
    port: { internalPolicyLocal: true }, endpoints: [['10.0.0.0:80', {}], ['10.0.0.1:80', {}]], cluster: undefined, local: [], onlyRemote: true,
  },
  {
    name: 'internalTrafficPolicy Local, all endpoints local',
    port: { internalPolicyLocal: true }, endpoints: [['10.0.0.0:80', { local: true }], ['10.0.0.1:80', { local: true }]], cluster: undefined, local: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'internalTrafficPolicy Local, some endpoints local',
    port: { internalPolicyLocal: true }, endpoints: [['10.0.0.0:80', { local: true }], ['10.0.0.1:80', {}]], cluster: undefined, local: ['10.0.0.0:80'],
  },
  { name: 'Cluster policy, no endpoint ready', endpoints: [['10.0.0.0:80', { ready: false }], ['10.0.0.1:80', { ready: false }]], cluster: [], local: undefined },
  { name: 'Cluster policy, some endpoints ready', endpoints: [['10.0.0.0:80', { ready: false }], ['10.0.0.1:80', {}]], cluster: ['10.0.0.1:80'], local: undefined },
  {
    name: 'Cluster policy, all endpoints terminating',
    endpoints: [['10.0.0.0:80', { ready: false, serving: true, terminating: true, local: true }], ['10.0.0.1:80', { ready: false, serving: true, terminating: true }]],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'], local: undefined,
  },
  {
    name: 'iTP Local, eTP Cluster, some endpoints local',
    port: { internalPolicyLocal: true, nodePort: 8080 }, endpoints: [['10.0.0.0:80', { local: true }], ['10.0.0.1:80', {}]],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'], local: ['10.0.0.0:80'], all: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP Cluster, eTP Local, some endpoints local',
    port: { externalPolicyLocal: true, nodePort: 8080 }, endpoints: [['10.0.0.0:80', { local: true }], ['10.0.0.1:80', {}]],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'], local: ['10.0.0.0:80'], all: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP Local, eTP Local, some endpoints local',
    port: { internalPolicyLocal: true, externalPolicyLocal: true, nodePort: 8080 }, endpoints: [['10.0.0.0:80', { local: true }], ['10.0.0.1:80', {}]],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'], local: ['10.0.0.0:80'], all: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP Local, eTP Local, all endpoints remote',
    port: { internalPolicyLocal: true, externalPolicyLocal: true, nodePort: 8080 }, endpoints: [['10.0.0.0:80', {}], ['10.0.0.1:80', {}]],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'], local: [], all: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP Local, eTP Local, all endpoints remote and terminating',
    port: { internalPolicyLocal: true, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [['10.0.0.0:80', { ready: false, serving: true, terminating: true }], ['10.0.0.1:80', { ready: false, serving: true, terminating: true }]],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'], local: [], all: ['10.0.0.0:80', '10.0.0.1:80'], onlyRemote: true,
  },
  {
    name: 'iTP Cluster, eTP Local, with terminating endpoints',
    port: { externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      ['10.0.0.0:80', {}], ['10.0.0.1:80', { ready: false, serving: false, local: true }],
      ['10.0.0.2:80', { ready: false, serving: true, terminating: true, local: true }], ['10.0.0.3:80', { ready: false, serving: true, terminating: true }],
    ],
    cluster: ['10.0.0.0:80'], local: ['10.0.0.2:80'], all: ['10.0.0.0:80', '10.0.0.2:80'],
  },
  {
    name: 'externalTrafficPolicy ignored when not externally accessible',
    port: { externalPolicyLocal: true }, endpoints: [['10.0.0.0:80', {}], ['10.0.0.1:80', { local: true }]],
    cluster: ['10.0.0.0:80', '10.0.0.1:80'], local: undefined,
  },
  {
    name: 'no cluster endpoints for an iTP Local internal-only service',
    port: { internalPolicyLocal: true }, endpoints: [['10.0.0.0:80', {}], ['10.0.0.1:80', { local: true }]],
    cluster: undefined, local: ['10.0.0.1:80'],
  },
];

const sorted = (xs: readonly Endpoint[]): string[] => xs.map((e) => e.key).sort();

for (const c of CASES) {
  test(`categorizeEndpoints: ${c.name}`, () => {
    const labels: Record<string, string> = c.zone === undefined ? {} : { [TOPOLOGY_ZONE_LABEL]: c.zone };
    const topology = nodeTopology(NODE, node(NODE, { labels }));
    const r = categorizeEndpoints(port(c.port), c.endpoints.map(([k, s]) => endpoint(k, s)), { topology });
    assert.equal(r.usesClusterEndpoints, c.cluster !== undefined, 'uses cluster endpoints');
    assert.equal(r.usesLocalEndpoints, c.local !== undefined, 'uses local endpoints');
    assert.deepEqual(sorted(r.clusterEndpoints), [...(c.cluster ?? [])].sort(), 'cluster endpoints');
    assert.deepEqual(sorted(r.localEndpoints), [...(c.local ?? [])].sort(), 'local endpoints');
    const all = c.all ?? c.cluster ?? c.local ?? [];
    assert.deepEqual(sorted(r.allReachable), [...all].sort(), 'all reachable endpoints');
    assert.equal(new Set(r.allReachable.map((e) => e.key)).size, r.allReachable.length, 'no endpoint twice');
    assert.equal(r.hasAnyEndpoints, all.length > 0 || c.onlyRemote === true, 'hasAnyEndpoints');
  });
}

test('topologyMode: without a topology (no node read yet) hints are not applied', () => {
  const eps = [endpoint('10.0.0.1:80', { zones: A }), endpoint('10.0.0.2:80', { zones: B })];
  assert.equal(topologyMode(eps, undefined), '');
  assert.equal(topologyMode(eps, { nodeName: NODE, zone: 'zone-a' }), 'PreferSameZone');
  assert.equal(topologyMode(eps.map((e) => ({ ...e, nodeHints: [NODE] })), { nodeName: NODE, zone: 'zone-a' }), 'PreferSameNode');
  assert.equal(categorizeEndpoints(port(), eps).clusterEndpoints.length, 2, 'no topology option: every ready endpoint');
});

test('snapshot → categorize: hints from EndpointSlices and the zone from the Node; a label change is a full resync', () => {
  const b = new SnapshotBuilder(NODE);
  b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'web-1', 'web', [
    ep('198.18.0.1', { zoneHints: ['zone-a'] }), ep('198.18.0.2', { zoneHints: ['zone-b'] }),
  ]) });
  b.handle({ kind: 'Node', type: 'add', object: node(NODE, { labels: { [TOPOLOGY_ZONE_LABEL]: 'zone-a' } }) });
  const spn = servicePortName(namespacedName('ns1', 'web'), 'http');
  const pick = (): string[] => {
    const s = b.next();
    const sp = s.servicePorts.get(spn);
    assert.ok(sp);
    return sorted(categorizeEndpoints(sp, s.endpoints.get(spn) ?? [], { topology: nodeTopology(s.nodeName, s.node) }).clusterEndpoints);
  };
  assert.deepEqual(pick(), ['198.18.0.1:8080']);
  assert.equal(b.handle({ kind: 'Node', type: 'update', previous: node(NODE, { labels: { [TOPOLOGY_ZONE_LABEL]: 'zone-a' } }), object: node(NODE, { labels: { [TOPOLOGY_ZONE_LABEL]: 'zone-b' } }) }), true);
  assert.equal(b.pending, true, 'a node label change is pending work');
  const before = b.snapshot?.generation ?? 0;
  assert.deepEqual(pick(), ['198.18.0.2:8080']);
  assert.equal(b.snapshot?.full, true, 'the node change makes the next snapshot full');
  assert.equal(b.snapshot?.generation, before + 1);
});
