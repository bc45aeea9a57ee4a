/**
 * nftables render + full serialization, checked by golden files (test/golden/nftables/, each
 * also checked by the real `nft -c` in nft-check.test.ts). Regenerate with UPDATE_GOLDEN=1 and
 * read the diff before committing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namespacedName, servicePortName } from '../../../src/core/ids.js';
import { renderNftables } from '../../../src/backends/nftables/render.js';
import { PortIndexed } from '../../../src/backends/nftables/port-indexed.js';
import { SortedPorts } from '../../../src/backends/port-cache.js';
import { serviceChainNames } from '../../../src/backends/nftables/names.js';
import { assertGolden } from '../../helpers/golden.js';
import { ep, node, slice, svc } from '../../helpers/objects.js';
import { NODE, OPTS, overall, port, snapshot, text, type Obj } from './fixture.js';

const spn = (ns: string, name: string, p: string) => servicePortName(namespacedName(ns, name), p);


const p80 = { portName: 'p80', port: 80 } as const;

export const GOLDEN_CASES: readonly { readonly name: string; readonly text: () => string }[] = [
  { name: 'overall', text: () => text(overall()) },
  {
    name: 'clusterip', text: () => text([
      svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1'), ep('10.180.0.2'), ep('10.180.0.3')], p80),
    ]),
  },
  {
    name: 'no-endpoints', text: () => text([
      svc('ns1', 'svc1', { type: 'NodePort', clusterIP: '172.30.0.41', externalIPs: ['192.168.99.11'], ports: [port('p80', 80, 'TCP', 3001)] }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1', { ready: false })], p80),
    ]),
  },
  {
    name: 'nodeport', text: () => text([
      svc('ns1', 'svc1', { type: 'NodePort', clusterIP: '172.30.0.41', ports: [port('p80', 80, 'TCP', 3001)] }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1'), ep('10.180.0.2')], p80),
    ]),
  },
  {
    name: 'nodeport-addresses', text: () => text([
      svc('ns1', 'svc1', { type: 'NodePort', clusterIP: '172.30.0.41', ports: [port('p80', 80, 'TCP', 3001)] }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], p80),
    ], { ...OPTS, nodePortAddresses: ['192.168.0.0/24'], nodeIPs: ['192.168.0.2', '127.0.0.1'] }),
  },
  {
    name: 'loadbalancer-source-ranges', text: () => text([
      svc('ns1', 'svc1', {
        type: 'LoadBalancer', clusterIP: '172.30.0.41', ports: [port('p80', 80, 'TCP', 3001)], loadBalancerIPs: ['1.2.3.4'],
        loadBalancerSourceRanges: ['203.0.113.0/25', '192.168.0.0/24'],
      }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], p80),
    ]),
  },
  {
    name: 'external-ips', text: () => text([
      svc('ns1', 'svc1', { clusterIP: '172.30.0.41', externalIPs: ['192.168.99.11', '192.168.99.12'], ports: [port('p80', 80)] }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], p80),
    ]),
  },
  {
    name: 'etp-local', text: () => text([
      svc('ns1', 'svc1', {
        type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.41', ports: [port('p80', 80, 'TCP', 3001)],
        loadBalancerIPs: ['1.2.3.4'], healthCheckNodePort: 30000,
      }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1'), ep('10.180.0.2', { nodeName: NODE })], p80),
    ]),
  },
  {
    name: 'etp-local-no-local-endpoints', text: () => text([
      svc('ns1', 'svc1', {
        type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.41', ports: [port('p80', 80, 'TCP', 3001)],
        loadBalancerIPs: ['1.2.3.4'], healthCheckNodePort: 30000,
      }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1', { nodeName: 'other-node' })], p80),
    ]),
  },
  {
    name: 'itp-local-no-local-endpoints', text: () => text([
      svc('ns1', 'svc1', { internalTrafficPolicy: 'Local', clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1', { nodeName: 'other-node' })], p80),
    ]),
  },
  {
    name: 'affinity', text: () => text([
      svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)], sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 10800 }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1'), ep('10.180.0.2')], p80),
    ]),
  },
  {
    name: 'masquerade-all', text: () => text([
      svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
      slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], p80),
    ], { ...OPTS, masqueradeAll: true, clusterCIDRs: [], masqueradeBit: 5, serviceCIDRs: ['172.30.0.0/16'] }),
  },
  {
    name: 'udp-sctp', text: () => text([
      svc('ns1', 'dns', { clusterIP: '172.30.0.10', ports: [port('dns', 53, 'UDP'), port('dns-tcp', 53, 'TCP')] }),
      slice('ns1', 'dns-1', 'dns', [ep('10.180.0.1')], { portName: 'dns', port: 5353, protocol: 'UDP' }),
      slice('ns1', 'dns-2', 'dns', [ep('10.180.0.1')], { portName: 'dns-tcp', port: 5353, protocol: 'TCP' }),
      svc('ns2', 'sctp', { clusterIP: '172.30.0.11', ports: [port('s', 9999, 'SCTP')] }),
      slice('ns2', 'sctp-1', 'sctp', [ep('10.180.0.2')], { portName: 's', port: 9999, protocol: 'SCTP' }),
    ]),
  },
  {
    name: 'ipv6', text: () => text([
      svc('ns1', 'svc1', { type: 'NodePort', clusterIP: 'fd00:172:30::41', clusterIPs: ['fd00:172:30::41'], ports: [port('p80', 80, 'TCP', 3001)] }),
      { ...slice('ns1', 'svc1-1', 'svc1', [ep('fd00:10:180::1')], p80), addressType: 'IPv6' },
    ], { ...OPTS, family: 'IPv6', nodeIPs: ['fd00::2'], clusterCIDRs: ['fd00:10::/64'] }),
  },
  {
    // Topology hints (upstream TestTopologyHints-style): this node is in zone-a; the Cluster
    // endpoints are those hinted for zone-a, the eTP Local endpoints ignore hints.
    name: 'topology', text: () => text([
      node(NODE, { labels: { 'topology.kubernetes.io/zone': 'zone-a' } }),
      svc('ns1', 'svc1', { type: 'NodePort', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.41', ports: [port('p80', 80, 'TCP', 3001)] }),
      slice('ns1', 'svc1-1', 'svc1', [
        ep('10.180.0.1', { zoneHints: ['zone-a'] }), ep('10.180.0.2', { zoneHints: ['zone-b'], nodeName: NODE }), ep('10.180.0.3', { zoneHints: ['zone-a'] }),
      ], p80),
    ]),
  },
];

for (const c of GOLDEN_CASES) {
  test(`golden: ${c.name}`, () => assertGolden(`nftables/${c.name}.nft`, c.text()));
}

test('ownership: each service port lists its chains and affinity sets; its elements point at its chains', () => {
  const m = renderNftables(snapshot(overall()), OPTS);
  const svc5 = m.servicePorts.get(spn('ns5', 'svc5', 'p80'));
  assert.ok(svc5);
  assert.deepEqual([...svc5.chains].sort(), [
    'endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80', 'external-HVFWP5L3-ns5/svc5/tcp/p80',
    'firewall-HVFWP5L3-ns5/svc5/tcp/p80', 'service-HVFWP5L3-ns5/svc5/tcp/p80',
  ]);
  assert.deepEqual(svc5.affinitySets, ['affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80']);
  const element = (set: string, key: string) => m.elements.get(set)?.find((e) => e.key === key);
  assert.deepEqual(element('firewall-ips', '5.6.7.8 . tcp . 80'), { key: '5.6.7.8 . tcp . 80', value: 'goto firewall-HVFWP5L3-ns5/svc5/tcp/p80', comment: 'ns5/svc5:p80' });
  assert.deepEqual(element('service-nodeports', 'tcp . 3002'), { key: 'tcp . 3002', value: 'goto external-HVFWP5L3-ns5/svc5/tcp/p80' });
  // svc6 has no endpoints: only a reject element, no chains.
  const svc6 = m.servicePorts.get(spn('ns6', 'svc6', 'p80'));
  assert.deepEqual(svc6?.chains, []);
  assert.deepEqual(element('no-endpoint-services', '172.30.0.46 . tcp . 80'), { key: '172.30.0.46 . tcp . 80', value: 'goto reject-chain', comment: 'ns6/svc6:p80' });
  // svc2: Local policy without a local endpoint.
  assert.deepEqual(m.noLocalEndpoints, { internal: 0, external: 1 });
});

test('render is pure: same snapshot, same model text', () => {
  assert.equal(text(overall()), text(overall()));
});

test('invalid service ports are skipped with a reason; other families ignored', () => {
  const m = renderNftables(snapshot([
    svc('ns1', 'bad', { clusterIP: '172.30.0.300', ports: [port('p80', 80)] }),
    svc('ns1', 'v6', { clusterIP: 'fd00::1', ports: [port('p80', 80)] }),
  ]), OPTS);
  assert.match(m.skipped.get(spn('ns1', 'bad', 'p80')) ?? '', /invalid cluster IP/);
  assert.equal(m.servicePorts.size, 0);
});

test('the model\'s chains and sets are views over its service ports: lookups find exactly what iteration lists', () => {
  const m = renderNftables(snapshot(overall()), OPTS);
  assert.ok(m.chains instanceof PortIndexed && m.sets instanceof PortIndexed);
  const chains = [...m.chains.keys()];
  assert.equal(new Set(chains).size, chains.length, 'each chain once');
  assert.equal(m.chains.size, chains.length);
  assert.equal(m.sets.size, [...m.sets.keys()].length);
  for (const [name, c] of m.chains) assert.equal(m.chains.get(name), c, name);
  for (const [name, s] of m.sets) assert.equal(m.sets.get(name), s, name);
  assert.ok(m.chains.has('services') && m.sets.has('service-ips'));
  // A name of a port the model has, of a port it has not, and one the model never had.
  const svc5 = 'endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80';
  assert.ok(m.chains.has(svc5) && m.sets.has(svc5.replace('endpoint-', 'affinity-')));
  assert.ok(!m.chains.has('endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.99/80'));
  assert.ok(!m.chains.has('endpoint-GTK6MW7G-ns9/svc9/tcp/p80__10.180.0.3/80'));
  assert.ok(!m.sets.has(svc5), 'a chain\'s name is no set');
  let n = 0;
  m.chains.forEach((c, name) => assert.equal(c.name, name, `forEach ${n++}`));
  assert.equal(n, chains.length);
  // The service ports: a sorted view, looked up by name.
  assert.ok(m.servicePorts instanceof SortedPorts);
  const ports = [...m.servicePorts.keys()];
  assert.deepEqual(ports, [...ports].sort(), 'in name order');
  assert.equal(m.servicePorts.size, ports.length);
  for (const [name, p] of m.servicePorts) assert.equal(m.servicePorts.get(name), p, name);
  for (const absent of [spn('ns5', 'svc5', 'p81'), spn('zz', 'zz', 'p80'), spn('a', 'a', 'a'), spn('ns1', 'svc1', '')]) assert.ok(!m.servicePorts.has(absent), absent);
});

test('names cut short (no port can be told from them): the model keeps Maps of its chains and sets', () => {
  // Names this long are refused by the sources; a snapshot made in code can still hold them.
  const ns = 'n'.repeat(250);
  const objects: Obj[] = [
    svc(ns, 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)], sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 }),
    slice(ns, 'svc1-1', 'svc1', [ep('10.180.0.1')], p80),
    svc('ns2', 'svc2', { clusterIP: '172.30.0.42', ports: [port('p80', 80)] }),
    slice('ns2', 'svc2-1', 'svc2', [ep('10.180.0.2')], p80),
  ];
  const m = renderNftables(snapshot(objects), OPTS);
  assert.ok(m.chains instanceof Map && m.sets instanceof Map);
  const svc1 = m.servicePorts.get(spn(ns, 'svc1', 'p80'));
  assert.ok(svc1);
  assert.ok(svc1.chains.length === 2 && svc1.chains.every((c) => c.endsWith('...')), svc1.chains.join(' '));
  assert.ok(svc1.affinitySets.length === 1 && svc1.affinitySets.every((c) => c.endsWith('...')));
  for (const [i, c] of svc1.chains.entries()) assert.equal(m.chains.get(c), svc1.chainObjects[i]);
  const svc2 = m.servicePorts.get(spn('ns2', 'svc2', 'p80'));
  assert.ok(svc2 && svc2.chains.length === 2 && svc2.chains.every((c) => m.chains.get(c)?.name === c));
});

test('two ports that make the same chain name (names holding "/"): the first in name order owns it, with both ports\' rules', () => {
  // Both spell out n/s/tcp/q/tcp/r: service "s" with port "q/tcp/r", and service "s/tcp/q" with port "r".
  // The sources refuse such names; a snapshot made in code can still hold them.
  const objects: Obj[] = [
    svc('n', 's', { clusterIP: '172.30.0.41', ports: [port('q/tcp/r', 80)] }),
    slice('n', 's-1', 's', [ep('10.180.0.1')], { portName: 'q/tcp/r', port: 80 }),
    svc('n', 's/tcp/q', { clusterIP: '172.30.0.42', ports: [port('r', 80)] }),
    slice('n', 'sq-1', 's/tcp/q', [ep('10.180.0.2')], { portName: 'r', port: 80 }),
  ];
  const m = renderNftables(snapshot(objects), OPTS);
  assert.ok(m.chains instanceof Map, 'such names keep Maps');
  const first = spn('n', 's/tcp/q', 'r'); // "n/s/tcp/q:r" sorts before "n/s:q/tcp/r"
  const second = spn('n', 's', 'q/tcp/r');
  const shared = serviceChainNames(first, 'tcp').cluster;
  assert.equal(shared, serviceChainNames(second, 'tcp').cluster);
  const chain = m.chains.get(shared);
  assert.equal(chain?.rules.filter((r: string) => r.startsWith('numgen')).length, 2, 'both ports\' load-balancing rules');
  const a = m.servicePorts.get(first);
  const b = m.servicePorts.get(second);
  assert.ok(a && b);
  assert.ok(a.chains.includes(shared) && !b.chains.includes(shared), 'the first port owns it');
  for (const p of [a, b]) {
    assert.equal(p.chainObjects.length, p.chains.length);
    for (const [i, c] of p.chains.entries()) assert.equal(p.chainObjects[i], m.chains.get(c), `${c}: the port holds the model's chain`);
  }
  assert.ok(b.chains.some((c) => c.startsWith('endpoint-')), 'the second keeps its own endpoint chain');
});
