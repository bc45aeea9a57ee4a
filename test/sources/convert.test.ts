import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PROBLEM,
  convertEndpointSlice,
  convertEndpoints,
  convertNode,
  convertObject,
  convertService,
  mirroredSliceName,
  type ConvertContext,
  type ConvertResult,
} from '../../src/sources/convert.js';
import type { EndpointSliceObject, ServiceObject } from '../../src/core/objects.js';
import type { SourceProblem } from '../../src/core/events.js';

const WHERE = 'm.yaml document 1';
const ctx: ConvertContext = { origin: { source: 'files', file: 'm.yaml', document: 1 }, where: WHERE };

type Raw = Record<string, unknown>;

function okValue<T>(r: ConvertResult<T>): T {
  if (!r.ok) assert.fail(`expected ok, got problems: ${JSON.stringify(r.problems, null, 2)}`);
  return r.object;
}
function problemsOf<T>(r: ConvertResult<T>): readonly SourceProblem[] {
  if (r.ok) assert.fail('expected problems, got a valid object');
  return r.problems;
}

function baseService(): Raw {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] },
  };
}

function baseSlice(): Raw {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc12', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [{ addresses: ['10.1.0.1'] }],
  };
}

function baseEndpoints(): Raw {
  return {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'legacy', namespace: 'shop' },
    subsets: [{ addresses: [{ ip: '10.1.0.1' }], ports: [{ port: 9000 }] }],
  };
}

/** Deep-clones a raw object and applies a mutation to it. */
function mutate(base: () => Raw, f: (o: Raw & { spec: Raw; metadata: Raw }) => void): Raw {
  const o = structuredClone(base()) as Raw & { spec: Raw; metadata: Raw };
  f(o);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Conversion with defaults

test('Service: the API server defaults are applied', () => {
  const svc = okValue(convertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } }, ctx));
  const expected: ServiceObject = {
    kind: 'Service', id: svc.id, namespace: 'default', name: 'web', labels: {}, annotations: {},
    type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'],
    ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 0 }],
    externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [],
    sessionAffinity: 'None', sessionAffinityTimeoutSeconds: 0,
    externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', healthCheckNodePort: 0,
    origin: ctx.origin,
  };
  assert.deepEqual(svc, expected);
  assert.equal(svc.id, 'default/web');
});

test('Service: every field converts', () => {
  const svc = okValue(convertService({
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: 'lb', namespace: 'shop', labels: { app: 'shop' }, annotations: { 'kproxy.io/scheduler': 'wrr' } },
    spec: {
      type: 'LoadBalancer', clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11', 'fd00::11'],
      ports: [
        { name: 'http', port: 80, targetPort: 'web', nodePort: 30080 },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30053 },
      ],
      externalIPs: ['203.0.113.7'],
      loadBalancerSourceRanges: [' 198.51.100.0/24 ', '2001:db8::/32'],
      sessionAffinity: 'ClientIP',
      externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local', healthCheckNodePort: 31000,
    },
    status: { loadBalancer: { ingress: [{ ip: '203.0.113.1' }, { ip: '203.0.113.2', ipMode: 'Proxy' }, { hostname: 'lb.example.com' }] } },
  }, ctx));
  assert.deepEqual(
    { ...svc, origin: undefined, id: undefined },
    {
      kind: 'Service', id: undefined, namespace: 'shop', name: 'lb', labels: { app: 'shop' }, annotations: { 'kproxy.io/scheduler': 'wrr' },
      type: 'LoadBalancer', clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11', 'fd00::11'],
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 'web', nodePort: 30080 },
        { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 30053 },
      ],
      externalIPs: ['203.0.113.7'],
      // ipMode Proxy ingress IPs are not programmed on nodes (upstream); hostnames have no IP.
      loadBalancerIPs: ['203.0.113.1'],
      loadBalancerSourceRanges: ['198.51.100.0/24', '2001:db8::/32'],
      sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 10800,
      externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local', healthCheckNodePort: 31000,
      origin: undefined,
    },
  );
});

test('Service: defaults and special forms', async (t) => {
  const cases: { name: string; raw: Raw; check: (s: ServiceObject) => void }[] = [
    {
      name: 'clusterIPs alone gives clusterIP',
      raw: mutate(baseService, (o) => { o.spec = { clusterIPs: ['10.96.0.12'], ports: [{ port: 80 }] }; }),
      check: (s) => { assert.equal(s.clusterIP, '10.96.0.12'); assert.deepEqual(s.clusterIPs, ['10.96.0.12']); },
    },
    {
      name: 'no cluster IP at all',
      raw: mutate(baseService, (o) => { o.spec = { ports: [{ port: 80 }] }; }),
      check: (s) => { assert.equal(s.clusterIP, ''); assert.deepEqual(s.clusterIPs, []); },
    },
    {
      name: 'headless without ports',
      raw: mutate(baseService, (o) => { o.spec = { clusterIP: 'None' }; }),
      check: (s) => { assert.equal(s.clusterIP, 'None'); assert.deepEqual(s.ports, []); },
    },
    {
      name: 'ExternalName without ports',
      raw: mutate(baseService, (o) => { o.spec = { type: 'ExternalName', externalName: 'db.example.com' }; }),
      check: (s) => { assert.equal(s.type, 'ExternalName'); assert.equal(s.clusterIP, ''); },
    },
    {
      name: 'ClientIP with an explicit timeout',
      raw: mutate(baseService, (o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 } }; }),
      check: (s) => assert.equal(s.sessionAffinityTimeoutSeconds, 60),
    },
    {
      name: 'targetPort 0 and "" default to port',
      raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'a', port: 80, targetPort: 0 }, { name: 'b', port: 81, targetPort: '' }]; }),
      check: (s) => assert.deepEqual(s.ports.map((p) => p.targetPort), [80, 81]),
    },
    {
      name: 'same port number with two protocols',
      raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53 }]; }),
      check: (s) => assert.deepEqual(s.ports.map((p) => `${p.port}/${p.protocol}`), ['53/UDP', '53/TCP']),
    },
    {
      name: 'NodePort without nodePort has none (no allocator)',
      raw: mutate(baseService, (o) => { o.spec.type = 'NodePort'; }),
      check: (s) => { assert.equal(s.type, 'NodePort'); assert.equal(s.ports[0]?.nodePort, 0); },
    },
    {
      name: 'externalTrafficPolicy allowed with externalIPs',
      raw: mutate(baseService, (o) => { o.spec.externalIPs = ['127.0.0.50']; o.spec.externalTrafficPolicy = 'Local'; }),
      check: (s) => { assert.equal(s.externalTrafficPolicy, 'Local'); assert.deepEqual(s.externalIPs, ['127.0.0.50']); },
    },
    {
      name: 'valid weights annotation',
      raw: mutate(baseService, (o) => { o.metadata.annotations = { 'kproxy.io/weights': '{"10.1.0.1": 3, "fd00::1": 0}' }; }),
      check: (s) => assert.equal(s.annotations['kproxy.io/weights'], '{"10.1.0.1": 3, "fd00::1": 0}'),
    },
  ];
  for (const c of cases) await t.test(c.name, () => c.check(okValue(convertService(c.raw, ctx))));
});

test('EndpointSlice: hints.forZones and hints.forNodes become zoneHints and nodeHints; empty names are errors', () => {
  const slice = okValue(convertEndpointSlice(mutate(baseSlice, (o) => {
    o.endpoints = [{ addresses: ['10.1.0.1'], hints: { forZones: [{ name: 'z1' }, { name: 'z2' }], forNodes: [{ name: 'n1' }] } }];
  }), ctx));
  assert.deepEqual(slice.endpoints[0]?.zoneHints, ['z1', 'z2']);
  assert.deepEqual(slice.endpoints[0]?.nodeHints, ['n1']);
  const bad = convertEndpointSlice(mutate(baseSlice, (o) => {
    o.endpoints = [{ addresses: ['10.1.0.1'], hints: { forNodes: [{ name: '' }] } }];
  }), ctx);
  assert.equal(bad.ok, false);
  assert.ok(!bad.ok && bad.problems.some((p) => /endpoints\[0\]\.hints\.forNodes\[0\]\.name/.test(p.where) && /node name/.test(p.message)), JSON.stringify(bad));
});

test('EndpointSlice: conditions are defaulted as upstream', () => {
  const slice = okValue(convertEndpointSlice(mutate(baseSlice, (o) => {
    o.endpoints = [
      { addresses: ['10.1.0.1'], nodeName: 'n1', zone: 'z1', hostname: 'pod-1', hints: { forZones: [{ name: 'z1' }] } },
      { addresses: ['10.1.0.2'], conditions: { ready: false } },
      { addresses: ['10.1.0.3'], conditions: { ready: false, serving: true, terminating: true } },
      { addresses: ['10.1.0.4'], conditions: {} },
    ];
  }), ctx));
  const expected: EndpointSliceObject = {
    kind: 'EndpointSlice', id: slice.id, namespace: 'shop', name: 'web-abc12', serviceName: 'web',
    labels: { 'kubernetes.io/service-name': 'web' }, annotations: {}, addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: [
      { addresses: ['10.1.0.1'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'n1', zone: 'z1', hostname: 'pod-1', zoneHints: ['z1'] },
      { addresses: ['10.1.0.2'], conditions: { ready: false, serving: false, terminating: false } },
      { addresses: ['10.1.0.3'], conditions: { ready: false, serving: true, terminating: true } },
      { addresses: ['10.1.0.4'], conditions: { ready: true, serving: true, terminating: false } },
    ],
    origin: ctx.origin,
  };
  assert.deepEqual(slice, expected);
  assert.equal(slice.id, 'shop/web-abc12');
});

test('EndpointSlice: IPv6 and FQDN slices, and a port without a number (a warning)', () => {
  const v6 = okValue(convertEndpointSlice(mutate(baseSlice, (o) => { o.addressType = 'IPv6'; o.endpoints = [{ addresses: ['fd00::1'] }]; }), ctx));
  assert.equal(v6.addressType, 'IPv6');
  const fqdn = okValue(convertEndpointSlice(mutate(baseSlice, (o) => { o.addressType = 'FQDN'; o.endpoints = [{ addresses: ['db.example.com'] }]; }), ctx));
  assert.deepEqual(fqdn.endpoints[0]?.addresses, ['db.example.com']);
  const r = convertEndpointSlice(mutate(baseSlice, (o) => { o.ports = [{ name: 'any' }, { name: 'http', port: 8080 }]; }), ctx);
  assert.ok(r.ok);
  assert.deepEqual(r.object.ports, [{ name: 'http', protocol: 'TCP', port: 8080 }]);
  assert.deepEqual(r.warnings, [{ code: PROBLEM.PORT_IGNORED, where: `${WHERE}, ports[0].port`, message: 'no port number: kube-proxy ignores this port' }]);
});

test('Node: converts; taint and pod CIDRs', () => {
  const node = okValue(convertNode({
    apiVersion: 'v1', kind: 'Node',
    metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z1' } },
    spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:244:1::/64'], taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] },
    status: { addresses: [{ type: 'InternalIP', address: '192.0.2.10' }, { type: 'Hostname', address: 'n1' }] },
  }, ctx));
  assert.deepEqual(node, {
    kind: 'Node', name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z1' },
    addresses: [{ type: 'InternalIP', address: '192.0.2.10' }, { type: 'Hostname', address: 'n1' }],
    podCIDRs: ['10.244.1.0/24', 'fd00:244:1::/64'], toBeDeleted: true, deleting: false, origin: ctx.origin,
  });
  const plain = okValue(convertNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n2' }, spec: { podCIDR: '10.244.2.0/24' } }, ctx));
  assert.deepEqual(plain.podCIDRs, ['10.244.2.0/24']);
  assert.equal(plain.toBeDeleted, false);
  assert.equal(plain.deleting, false);
  const going = okValue(convertNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n3', deletionTimestamp: '2024-01-01T00:00:00Z' } }, ctx));
  assert.equal(going.deleting, true);
});

// ---------------------------------------------------------------------------------------------
// Endpoints mirroring

test('Endpoints: mirrored as the EndpointSliceMirroring controller does', () => {
  const slices = okValue(convertEndpoints({
    apiVersion: 'v1', kind: 'Endpoints',
    metadata: {
      name: 'legacy', namespace: 'shop', labels: { team: 'a' },
      annotations: {
        'kproxy.io/weights': '{"10.1.0.1": 2}',
        'endpoints.kubernetes.io/last-change-trigger-time': '2024-01-01T00:00:00Z',
        'kubectl.kubernetes.io/last-applied-configuration': '{}',
      },
    },
    subsets: [
      {
        addresses: [{ ip: '10.1.0.1', nodeName: 'n1', hostname: 'a' }, { ip: 'fd00::1' }],
        notReadyAddresses: [{ ip: '10.1.0.2' }],
        ports: [{ name: 'http', port: 9000 }, { name: 'metrics', port: 9090 }],
      },
      { addresses: [{ ip: '10.1.0.3' }], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] },
      // Same ports as the first subset, in another order: same slice (upstream keys slices by port set).
      { addresses: [{ ip: '10.1.0.4' }], ports: [{ name: 'metrics', port: 9090 }, { name: 'http', port: 9000 }] },
    ],
  }, ctx));
  const labels = { team: 'a', 'kubernetes.io/service-name': 'legacy', 'endpointslice.kubernetes.io/managed-by': 'endpointslicemirroring-controller.k8s.io' };
  const annotations = { 'kproxy.io/weights': '{"10.1.0.1": 2}' };
  const ready = { ready: true, serving: true, terminating: false };
  const notReady = { ready: false, serving: false, terminating: false };
  const httpPorts = [{ name: 'http', protocol: 'TCP', port: 9000 }, { name: 'metrics', protocol: 'TCP', port: 9090 }];
  assert.deepEqual(slices.map((s) => ({ ...s, id: String(s.id) })), [
    {
      kind: 'EndpointSlice', id: `shop/${slices[0]?.name ?? ''}`, namespace: 'shop', name: slices[0]?.name, serviceName: 'legacy', labels, annotations,
      addressType: 'IPv4', ports: httpPorts,
      endpoints: [
        { addresses: ['10.1.0.1'], conditions: ready, nodeName: 'n1', hostname: 'a' },
        { addresses: ['10.1.0.2'], conditions: notReady },
        { addresses: ['10.1.0.4'], conditions: ready },
      ],
      origin: ctx.origin,
    },
    {
      kind: 'EndpointSlice', id: `shop/${slices[1]?.name ?? ''}`, namespace: 'shop', name: slices[1]?.name, serviceName: 'legacy', labels, annotations,
      addressType: 'IPv6', ports: httpPorts, endpoints: [{ addresses: ['fd00::1'], conditions: ready }], origin: ctx.origin,
    },
    {
      kind: 'EndpointSlice', id: `shop/${slices[2]?.name ?? ''}`, namespace: 'shop', name: slices[2]?.name, serviceName: 'legacy', labels, annotations,
      addressType: 'IPv4', ports: [{ name: 'dns', protocol: 'UDP', port: 53 }], endpoints: [{ addresses: ['10.1.0.3'], conditions: ready }], origin: ctx.origin,
    },
  ]);
  // Names: upstream's generateName prefix "<name>-" plus 5 characters of its generator alphabet.
  for (const s of slices) assert.match(s.name, /^legacy-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
  assert.equal(new Set(slices.map((s) => s.name)).size, 3);
});

test('Endpoints: slice names are deterministic and stable across address edits', () => {
  const a = okValue(convertEndpoints(baseEndpoints(), ctx));
  const b = okValue(convertEndpoints(mutate(baseEndpoints, (o) => { o.subsets = [{ addresses: [{ ip: '10.1.0.9' }, { ip: '10.1.0.8' }], ports: [{ port: 9000 }] }]; }), ctx));
  const c = okValue(convertEndpoints(mutate(baseEndpoints, (o) => { o.subsets = [{ addresses: [{ ip: '10.1.0.1' }], ports: [{ port: 9001 }] }]; }), ctx));
  assert.equal(a.length, 1);
  assert.equal(a[0]?.name, b[0]?.name, 'same ports: same slice, so an address edit is an update');
  assert.notEqual(a[0]?.name, c[0]?.name, 'other ports: another slice');
  assert.equal(a[0]?.name, mirroredSliceName('legacy', 'IPv4|/TCP/9000'));
  // Long names: the prefix is cut to 58 characters as upstream's name generator does.
  const long = 'x'.repeat(70);
  assert.equal(mirroredSliceName(long, 'IPv4|').length, 63);
});

test('Endpoints: skip-mirror and leader-election Endpoints yield no slices', async (t) => {
  const cases: { name: string; meta: Raw }[] = [
    { name: 'skip-mirror label', meta: { name: 'legacy', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } } },
    { name: 'leader-election annotation', meta: { name: 'kube-scheduler', annotations: { 'control-plane.alpha.kubernetes.io/leader': '{}' } } },
  ];
  for (const c of cases) {
    await t.test(c.name, () => assert.deepEqual(okValue(convertEndpoints(mutate(baseEndpoints, (o) => { o.metadata = c.meta; }), ctx)), []));
  }
  await t.test('skip-mirror "false" is mirrored', () => {
    const r = okValue(convertEndpoints(mutate(baseEndpoints, (o) => { o.metadata = { name: 'legacy', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'false' } }; }), ctx));
    assert.equal(r.length, 1);
  });
});

// ---------------------------------------------------------------------------------------------
// Validation: every problem, with where and why

interface ProblemCase {
  readonly name: string;
  readonly raw: Raw;
  /** [code, field path, message (exact string or pattern)] */
  readonly problems: readonly (readonly [string, string, string | RegExp])[];
}

function checkProblems(got: readonly SourceProblem[], want: ProblemCase['problems']): void {
  assert.deepEqual(
    got.map((p) => [p.code, p.where]),
    want.map(([code, field]) => [code, field === '' ? WHERE : `${WHERE}, ${field}`]),
    JSON.stringify(got, null, 2),
  );
  want.forEach(([, , message], i) => {
    const m = got[i]?.message ?? '';
    if (typeof message === 'string') assert.equal(m, message);
    else assert.match(m, message);
  });
}

const serviceCases: ProblemCase[] = [
  { name: 'missing metadata.name', raw: mutate(baseService, (o) => { o.metadata = { namespace: 'shop' }; }),
    problems: [[PROBLEM.MISSING_NAME, 'metadata.name', 'required: every object needs a name']] },
  { name: 'generateName instead of name', raw: mutate(baseService, (o) => { o.metadata = { generateName: 'web-' }; }),
    problems: [[PROBLEM.MISSING_NAME, 'metadata.name', /generateName needs an API server/]] },
  { name: 'name not a DNS-1035 label', raw: mutate(baseService, (o) => { o.metadata.name = '1web'; }),
    problems: [[PROBLEM.INVALID_NAME, 'metadata.name', /must be a DNS-1035 label .*got "1web"/]] },
  { name: 'bad namespace', raw: mutate(baseService, (o) => { o.metadata.namespace = 'Shop'; }),
    problems: [[PROBLEM.INVALID_NAME, 'metadata.namespace', /DNS-1123 label/]] },
  { name: 'label value not a string', raw: mutate(baseService, (o) => { o.metadata.labels = { version: 2 }; }),
    problems: [[PROBLEM.FIELD_TYPE, 'metadata.labels[version]', 'must be a string, got number 2 (quote it in YAML)']] },
  { name: 'bad label value', raw: mutate(baseService, (o) => { o.metadata.labels = { app: 'a b' }; }),
    problems: [[PROBLEM.INVALID_LABEL, 'metadata.labels[app]', /label value "a b" must be/]] },
  { name: 'unknown type', raw: mutate(baseService, (o) => { o.spec.type = 'Internal'; }),
    problems: [[PROBLEM.INVALID_VALUE, 'spec.type', 'must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Internal"']] },
  { name: 'invalid clusterIP', raw: mutate(baseService, (o) => { o.spec.clusterIP = '10.96.0.999'; }),
    problems: [[PROBLEM.INVALID_IP, 'spec.clusterIP', '"10.96.0.999" is not a valid IP address (or "None" for a headless Service)']] },
  { name: 'clusterIPs[0] differs from clusterIP', raw: mutate(baseService, (o) => { o.spec.clusterIPs = ['10.96.0.11']; }),
    problems: [[PROBLEM.INVALID_VALUE, 'spec.clusterIPs[0]', 'must match spec.clusterIP ("10.96.0.10"), got "10.96.0.11"']] },
  { name: 'two cluster IPs of one family', raw: mutate(baseService, (o) => { o.spec.clusterIPs = ['10.96.0.10', '10.96.0.11']; }),
    problems: [[PROBLEM.INVALID_VALUE, 'spec.clusterIPs[1]', 'dual-stack cluster IPs must be one IPv4 and one IPv6 address']] },
  { name: 'None for a NodePort Service', raw: mutate(baseService, (o) => { o.spec.type = 'NodePort'; o.spec.clusterIP = 'None'; }),
    problems: [[PROBLEM.INVALID_VALUE, 'spec.clusterIP', 'may not be "None" when `type` is \'NodePort\'']] },
  { name: 'ExternalName without externalName', raw: mutate(baseService, (o) => { o.spec = { type: 'ExternalName' }; }),
    problems: [[PROBLEM.REQUIRED, 'spec.externalName', 'required when `type` is \'ExternalName\'']] },
  { name: 'ExternalName with a cluster IP', raw: mutate(baseService, (o) => { o.spec.type = 'ExternalName'; o.spec.externalName = 'db.example.com'; }),
    problems: [[PROBLEM.NOT_ALLOWED, 'spec.clusterIP', 'may not be set when `type` is \'ExternalName\'']] },
  { name: 'no ports', raw: mutate(baseService, (o) => { o.spec.ports = []; }),
    problems: [[PROBLEM.REQUIRED, 'spec.ports', /a Service needs at least one port/]] },
  { name: 'ports not a list', raw: mutate(baseService, (o) => { o.spec.ports = { port: 80 }; }),
    problems: [[PROBLEM.FIELD_TYPE, 'spec.ports', 'must be a list, got a mapping']] },
  { name: 'port 0', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: 0 }]; }),
    problems: [[PROBLEM.INVALID_PORT, 'spec.ports[0].port', 'port 0 is out of range: must be between 1 and 65535, inclusive']] },
  { name: 'port 65536 in the second port', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'a', port: 80 }, { name: 'b', port: 65536 }]; }),
    problems: [[PROBLEM.INVALID_PORT, 'spec.ports[1].port', 'port 65536 is out of range: must be between 1 and 65535, inclusive']] },
  { name: 'port missing', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http' }]; }),
    problems: [[PROBLEM.REQUIRED, 'spec.ports[0].port', 'required: a port number in 1..65535']] },
  { name: 'port as a string', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: '80' }]; }),
    problems: [[PROBLEM.FIELD_TYPE, 'spec.ports[0].port', 'must be an integer, got string "80"']] },
  { name: 'unknown protocol', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: 80, protocol: 'HTTP' }]; }),
    problems: [[PROBLEM.INVALID_PROTOCOL, 'spec.ports[0].protocol', 'must be one of TCP, UDP, SCTP, got "HTTP"']] },
  { name: 'duplicate port names', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: 80 }, { name: 'http', port: 81 }]; }),
    problems: [[PROBLEM.DUPLICATE_PORT, 'spec.ports[1].name', `duplicate port name "http" (also ${WHERE}, spec.ports[0])`]] },
  { name: 'more than one port, one without a name', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: 80 }, { port: 81 }]; }),
    problems: [[PROBLEM.PORT_NAME_REQUIRED, 'spec.ports[1].name', 'required: every port needs a name when a Service has more than one port']] },
  { name: 'duplicate port and protocol', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'a', port: 80 }, { name: 'b', port: 80, protocol: 'TCP' }]; }),
    problems: [[PROBLEM.DUPLICATE_PORT, 'spec.ports[1]', `duplicate port 80/TCP (also ${WHERE}, spec.ports[0])`]] },
  { name: 'bad port name', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'HTTP', port: 80 }]; }),
    problems: [[PROBLEM.INVALID_NAME, 'spec.ports[0].name', /port name must be a DNS-1123 label/]] },
  { name: 'targetPort as a quoted number', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: 80, targetPort: '8080' }]; }),
    problems: [[PROBLEM.INVALID_PORT, 'spec.ports[0].targetPort', 'targetPort "8080" is a string: write a number without quotes, or a container port name']] },
  { name: 'targetPort out of range', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: 80, targetPort: 70000 }]; }),
    problems: [[PROBLEM.INVALID_PORT, 'spec.ports[0].targetPort', /targetPort 70000 is out of range/]] },
  { name: 'nodePort out of range', raw: mutate(baseService, (o) => { o.spec.type = 'NodePort'; o.spec.ports = [{ name: 'http', port: 80, nodePort: 70000 }]; }),
    problems: [[PROBLEM.INVALID_NODE_PORT, 'spec.ports[0].nodePort', 'nodePort 70000 is out of range: must be between 1 and 65535, inclusive']] },
  { name: 'nodePort on a ClusterIP Service', raw: mutate(baseService, (o) => { o.spec.ports = [{ name: 'http', port: 80, nodePort: 30080 }]; }),
    problems: [[PROBLEM.INVALID_NODE_PORT, 'spec.ports[0].nodePort', 'may not be used when `type` is \'ClusterIP\' (only NodePort and LoadBalancer Services have node ports)']] },
  { name: 'duplicate nodePort', raw: mutate(baseService, (o) => { o.spec.type = 'NodePort'; o.spec.ports = [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81, nodePort: 30080 }]; }),
    problems: [[PROBLEM.INVALID_NODE_PORT, 'spec.ports[1].nodePort', `duplicate nodePort 30080/TCP (also ${WHERE}, spec.ports[0].nodePort)`]] },
  { name: 'invalid externalIP', raw: mutate(baseService, (o) => { o.spec.externalIPs = ['203.0.113.7', '203.0.113']; }),
    problems: [[PROBLEM.INVALID_IP, 'spec.externalIPs[1]', '"203.0.113" is not a valid IP address']] },
  { name: 'unspecified externalIP', raw: mutate(baseService, (o) => { o.spec.externalIPs = ['0.0.0.0']; }),
    problems: [[PROBLEM.INVALID_IP, 'spec.externalIPs[0]', '"0.0.0.0" may not be unspecified (0.0.0.0 or ::)']] },
  { name: 'multicast externalIP', raw: mutate(baseService, (o) => { o.spec.externalIPs = ['ff02::1']; }),
    problems: [[PROBLEM.INVALID_IP, 'spec.externalIPs[0]', /may not be a multicast address/]] },
  { name: 'invalid load-balancer ingress IP', raw: mutate(baseService, (o) => { o.spec.type = 'LoadBalancer'; o.status = { loadBalancer: { ingress: [{ ip: 'lb.example.com' }] } }; }),
    problems: [[PROBLEM.INVALID_IP, 'status.loadBalancer.ingress[0].ip', '"lb.example.com" is not a valid IP address']] },
  { name: 'bad loadBalancerSourceRanges CIDR', raw: mutate(baseService, (o) => { o.spec.type = 'LoadBalancer'; o.spec.loadBalancerSourceRanges = ['10.0.0.0/8', '10.0.0.0/33']; }),
    problems: [[PROBLEM.INVALID_CIDR, 'spec.loadBalancerSourceRanges[1]', '"10.0.0.0/33" is not a valid CIDR (e.g. "203.0.113.0/24" or "2001:db8::/32")']] },
  { name: 'loadBalancerSourceRanges on a ClusterIP Service', raw: mutate(baseService, (o) => { o.spec.loadBalancerSourceRanges = ['10.0.0.0/8']; }),
    problems: [[PROBLEM.NOT_ALLOWED, 'spec.loadBalancerSourceRanges', 'may only be used when `type` is \'LoadBalancer\'']] },
  { name: 'unknown sessionAffinity', raw: mutate(baseService, (o) => { o.spec.sessionAffinity = 'Cookie'; }),
    problems: [[PROBLEM.INVALID_VALUE, 'spec.sessionAffinity', 'must be one of None, ClientIP, got "Cookie"']] },
  { name: 'affinity timeout 0', raw: mutate(baseService, (o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 0 } }; }),
    problems: [[PROBLEM.SESSION_AFFINITY_TIMEOUT, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 'timeout 0 is out of range: must be between 1 and 86400 seconds (24 hours), inclusive']] },
  { name: 'affinity timeout above a day', raw: mutate(baseService, (o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 86401 } }; }),
    problems: [[PROBLEM.SESSION_AFFINITY_TIMEOUT, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', /timeout 86401 is out of range/]] },
  { name: 'affinity config with sessionAffinity None', raw: mutate(baseService, (o) => { o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 } }; }),
    problems: [[PROBLEM.NOT_ALLOWED, 'spec.sessionAffinityConfig', 'must not be set when sessionAffinity is None']] },
  { name: 'externalTrafficPolicy on a ClusterIP Service', raw: mutate(baseService, (o) => { o.spec.externalTrafficPolicy = 'Local'; }),
    problems: [[PROBLEM.NOT_ALLOWED, 'spec.externalTrafficPolicy', /may only be set for externally-accessible services/]] },
  { name: 'unknown internalTrafficPolicy', raw: mutate(baseService, (o) => { o.spec.internalTrafficPolicy = 'Node'; }),
    problems: [[PROBLEM.INVALID_VALUE, 'spec.internalTrafficPolicy', 'must be one of Cluster, Local, got "Node"']] },
  { name: 'healthCheckNodePort without LoadBalancer+Local', raw: mutate(baseService, (o) => { o.spec.type = 'NodePort'; o.spec.healthCheckNodePort = 31000; }),
    problems: [[PROBLEM.NOT_ALLOWED, 'spec.healthCheckNodePort', 'may only be set when `type` is \'LoadBalancer\' and `externalTrafficPolicy` is \'Local\'']] },
  { name: 'unknown scheduler annotation', raw: mutate(baseService, (o) => { o.metadata.annotations = { 'kproxy.io/scheduler': 'fastest' }; }),
    problems: [[PROBLEM.SCHEDULER_ANNOTATION, 'metadata.annotations[kproxy.io/scheduler]', 'unknown scheduler "fastest": must be one of rr, wrr, lc, wlc, sed, nq, dh, sh, lblc, lblcr, mh']] },
  { name: 'weights annotation not JSON', raw: mutate(baseService, (o) => { o.metadata.annotations = { 'kproxy.io/weights': '10.1.0.1=3' }; }),
    problems: [[PROBLEM.WEIGHTS_ANNOTATION, 'metadata.annotations[kproxy.io/weights]', /^invalid weights: not valid JSON/]] },
  { name: 'weights annotation with a weight out of range', raw: mutate(baseService, (o) => { o.metadata.annotations = { 'kproxy.io/weights': '{"10.1.0.1": 70000}' }; }),
    problems: [[PROBLEM.WEIGHTS_ANNOTATION, 'metadata.annotations[kproxy.io/weights]', 'invalid weights: weight for "10.1.0.1" must be an integer in 0..65535, got 70000']] },
  { name: 'weights annotation keyed by a pod name', raw: mutate(baseService, (o) => { o.metadata.annotations = { 'kproxy.io/weights': '{"pod-a": 1}' }; }),
    problems: [[PROBLEM.WEIGHTS_ANNOTATION, 'metadata.annotations[kproxy.io/weights]', 'invalid weights: key "pod-a" is not an endpoint IP address']] },
  { name: 'several problems at once, in field order', raw: mutate(baseService, (o) => { o.spec.clusterIP = 'x'; o.spec.ports = [{ name: 'http', port: 0, protocol: 'ICMP' }]; }),
    problems: [
      [PROBLEM.INVALID_IP, 'spec.clusterIP', /"x" is not a valid IP address/],
      [PROBLEM.INVALID_PROTOCOL, 'spec.ports[0].protocol', /got "ICMP"/],
      [PROBLEM.INVALID_PORT, 'spec.ports[0].port', /port 0 is out of range/],
    ] },
];

test('Service validation problems', async (t) => {
  for (const c of serviceCases) await t.test(c.name, () => checkProblems(problemsOf(convertService(c.raw, ctx)), c.problems));
});

const sliceCases: ProblemCase[] = [
  { name: 'missing kubernetes.io/service-name label', raw: mutate(baseSlice, (o) => { o.metadata.labels = {}; }),
    problems: [[PROBLEM.MISSING_SERVICE_NAME, 'metadata.labels[kubernetes.io/service-name]', 'required: kube-proxy only uses EndpointSlices that name their Service with this label']] },
  { name: 'missing name', raw: mutate(baseSlice, (o) => { o.metadata.name = ''; }),
    problems: [[PROBLEM.MISSING_NAME, 'metadata.name', 'required: every object needs a name']] },
  { name: 'missing addressType', raw: mutate(baseSlice, (o) => { delete o.addressType; }),
    problems: [[PROBLEM.REQUIRED, 'addressType', 'required: one of IPv4, IPv6, FQDN']] },
  { name: 'unknown addressType', raw: mutate(baseSlice, (o) => { o.addressType = 'IPv5'; }),
    problems: [[PROBLEM.INVALID_VALUE, 'addressType', 'must be one of IPv4, IPv6, FQDN, got "IPv5"']] },
  { name: 'invalid IPv4 address', raw: mutate(baseSlice, (o) => { o.endpoints = [{ addresses: ['10.1.0.1'] }, { addresses: ['10.1.0.256'] }]; }),
    problems: [[PROBLEM.INVALID_IP, 'endpoints[1].addresses[0]', '"10.1.0.256" is not a valid IPv4 address (the slice\'s addressType is IPv4)']] },
  { name: 'IPv6 address in an IPv4 slice', raw: mutate(baseSlice, (o) => { o.endpoints = [{ addresses: ['fd00::1'] }]; }),
    problems: [[PROBLEM.INVALID_IP, 'endpoints[0].addresses[0]', '"fd00::1" is an IPv6 address, but the slice\'s addressType is IPv4']] },
  { name: 'IPv4 address in an IPv6 slice', raw: mutate(baseSlice, (o) => { o.addressType = 'IPv6'; }),
    problems: [[PROBLEM.INVALID_IP, 'endpoints[0].addresses[0]', '"10.1.0.1" is an IPv4 address, but the slice\'s addressType is IPv6']] },
  { name: 'endpoint without addresses', raw: mutate(baseSlice, (o) => { o.endpoints = [{ addresses: [] }]; }),
    problems: [[PROBLEM.REQUIRED, 'endpoints[0].addresses', 'required: an endpoint needs at least one address']] },
  { name: 'condition not a boolean', raw: mutate(baseSlice, (o) => { o.endpoints = [{ addresses: ['10.1.0.1'], conditions: { ready: 'yes' } }]; }),
    problems: [[PROBLEM.FIELD_TYPE, 'endpoints[0].conditions.ready', 'must be true or false, got string "yes"']] },
  { name: 'port out of range', raw: mutate(baseSlice, (o) => { o.ports = [{ name: 'http', port: 65536 }]; }),
    problems: [[PROBLEM.INVALID_PORT, 'ports[0].port', 'port 65536 is out of range: must be between 1 and 65535, inclusive']] },
  { name: 'unknown protocol', raw: mutate(baseSlice, (o) => { o.ports = [{ name: 'http', port: 80, protocol: 'tcp' }]; }),
    problems: [[PROBLEM.INVALID_PROTOCOL, 'ports[0].protocol', 'must be one of TCP, UDP, SCTP, got "tcp"']] },
  { name: 'duplicate port names', raw: mutate(baseSlice, (o) => { o.ports = [{ name: 'http', port: 80 }, { name: 'http', port: 81 }]; }),
    problems: [[PROBLEM.DUPLICATE_PORT, 'ports[1].name', `duplicate port name "http" (also ${WHERE}, ports[0])`]] },
  { name: 'bad weights annotation on the slice', raw: mutate(baseSlice, (o) => { o.metadata.annotations = { 'kproxy.io/weights': '[1,2]' }; }),
    problems: [[PROBLEM.WEIGHTS_ANNOTATION, 'metadata.annotations[kproxy.io/weights]', 'invalid weights: must be a JSON object from endpoint address to integer weight']] },
  { name: 'bad nodeName', raw: mutate(baseSlice, (o) => { o.endpoints = [{ addresses: ['10.1.0.1'], nodeName: 'Node_1' }]; }),
    problems: [[PROBLEM.INVALID_NAME, 'endpoints[0].nodeName', /DNS-1123 subdomain.*got "Node_1"/]] },
];

test('EndpointSlice validation problems', async (t) => {
  for (const c of sliceCases) await t.test(c.name, () => checkProblems(problemsOf(convertEndpointSlice(c.raw, ctx)), c.problems));
});

const endpointsCases: ProblemCase[] = [
  { name: 'invalid address IP', raw: mutate(baseEndpoints, (o) => { o.subsets = [{ addresses: [{ ip: '10.1.0.1' }], notReadyAddresses: [{ ip: 'pod-a' }], ports: [{ port: 9000 }] }]; }),
    problems: [[PROBLEM.INVALID_IP, 'subsets[0].notReadyAddresses[0].ip', '"pod-a" is not a valid IP address']] },
  { name: 'subset without addresses', raw: mutate(baseEndpoints, (o) => { o.subsets = [{ ports: [{ port: 9000 }] }]; }),
    problems: [[PROBLEM.REQUIRED, 'subsets[0]', 'must specify `addresses` or `notReadyAddresses`']] },
  { name: 'port 0', raw: mutate(baseEndpoints, (o) => { o.subsets = [{ addresses: [{ ip: '10.1.0.1' }], ports: [{ port: 0 }] }]; }),
    problems: [[PROBLEM.INVALID_PORT, 'subsets[0].ports[0].port', 'port 0 is out of range: must be between 1 and 65535, inclusive']] },
  { name: 'two unnamed ports', raw: mutate(baseEndpoints, (o) => { o.subsets = [{ addresses: [{ ip: '10.1.0.1' }], ports: [{ port: 9000 }, { port: 9001 }] }]; }),
    problems: [
      [PROBLEM.PORT_NAME_REQUIRED, 'subsets[0].ports[0].name', 'required: every port needs a name when an Endpoints subset has more than one port'],
      [PROBLEM.PORT_NAME_REQUIRED, 'subsets[0].ports[1].name', 'required: every port needs a name when an Endpoints subset has more than one port'],
    ] },
  { name: 'missing ip', raw: mutate(baseEndpoints, (o) => { o.subsets = [{ addresses: [{ nodeName: 'n1' }], ports: [{ port: 9000 }] }]; }),
    problems: [[PROBLEM.REQUIRED, 'subsets[0].addresses[0].ip', 'required: the endpoint IP address']] },
];

test('Endpoints validation problems', async (t) => {
  for (const c of endpointsCases) await t.test(c.name, () => checkProblems(problemsOf(convertEndpoints(c.raw, ctx)), c.problems));
});

test('Node validation problems', () => {
  checkProblems(problemsOf(convertNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: { podCIDRs: ['10.244.1.0/24', '10.244.2.0'] } }, ctx)),
    [[PROBLEM.INVALID_CIDR, 'spec.podCIDRs[1]', '"10.244.2.0" is not a valid CIDR']]);
});

// ---------------------------------------------------------------------------------------------
// Dispatch

test('convertObject: dispatch by kind, unknown kinds, wrong apiVersions, List items', async (t) => {
  await t.test('known kinds', () => {
    const kinds = [baseService(), baseSlice(), baseEndpoints(), { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } }].map((raw) => {
      const out = convertObject(raw, ctx);
      assert.equal(out.status, 'ok');
      return out.status === 'ok' ? [out.key, out.objects.map((o) => o.kind).join(',')] : [];
    });
    assert.deepEqual(kinds, [
      ['Service/shop/web', 'Service'],
      ['EndpointSlice/shop/web-abc12', 'EndpointSlice'],
      ['Endpoints/shop/legacy', 'EndpointSlice'],
      ['Node//n1', 'Node'],
    ]);
  });
  await t.test('unknown kind is ignored with a problem', () => {
    assert.deepEqual(convertObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } }, ctx), {
      status: 'ignored',
      problems: [{ code: PROBLEM.UNKNOWN_KIND, where: `${WHERE}, kind`, message: 'kind "Deployment" (apps/v1) is not one kproxy reads (Service, Endpoints, EndpointSlice, Node); ignored' }],
    });
  });
  await t.test('wrong apiVersion keeps the identity', () => {
    assert.deepEqual(convertObject({ apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { name: 's', namespace: 'shop' } }, ctx), {
      status: 'invalid', key: 'EndpointSlice/shop/s', kind: 'EndpointSlice',
      problems: [{ code: PROBLEM.API_VERSION, where: `${WHERE}, apiVersion`, message: 'EndpointSlice must have apiVersion "discovery.k8s.io/v1", got "discovery.k8s.io/v1beta1"' }],
    });
  });
  await t.test('missing kind', () => {
    assert.deepEqual(convertObject({ apiVersion: 'v1', metadata: { name: 'x' } }, ctx), {
      status: 'invalid', key: undefined, kind: undefined,
      problems: [{ code: PROBLEM.MISSING_KIND, where: `${WHERE}, kind`, message: 'required: every object needs a kind' }],
    });
  });
  await t.test('not a mapping', () => {
    const out = convertObject(['a'], ctx);
    assert.equal(out.status, 'invalid');
    assert.deepEqual(out.status === 'invalid' ? out.problems.map((p) => [p.code, p.where]) : [], [[PROBLEM.NOT_AN_OBJECT, WHERE]]);
  });
  await t.test('a List item: the field path starts at the item', () => {
    const out = convertObject(mutate(baseService, (o) => { o.spec.clusterIP = 'bad'; }), { ...ctx, path: 'items[2]' });
    assert.equal(out.status, 'invalid');
    assert.deepEqual(out.status === 'invalid' ? out.problems.map((p) => p.where) : [], [`${WHERE}, items[2].spec.clusterIP`]);
  });
});
