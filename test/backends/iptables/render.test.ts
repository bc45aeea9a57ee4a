/**
 * iptables render + full serialization, checked by golden files (test/golden/iptables/).
 * Each golden was read against upstream kube-proxy's syncProxyRules and its proxier_test
 * expectations; regenerate with UPDATE_GOLDEN=1 and read the diff before committing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namespacedName, servicePortName } from '../../../src/core/ids.js';
import type { EndpointSliceObject, ServiceObject } from '../../../src/core/objects.js';
import { renderIptables, TOP_LEVEL_CHAINS } from '../../../src/backends/iptables/render.js';
import { TableChains } from '../../../src/backends/iptables/table-chains.js';
import { SortedPorts } from '../../../src/backends/port-cache.js';
import { serializeFull } from '../../../src/backends/iptables/serialize.js';
import { assertGolden } from '../../helpers/golden.js';
import { ep, node, slice, svc } from '../../helpers/objects.js';
import { NODE, OPTS, UPSTREAM_FAKE_OPTS, overall, port, snapshot, text } from './fixture.js';

type Obj = ServiceObject | EndpointSliceObject;
const EMPTY = { topChains: [], topRules: [], ownChains: [], ownRules: [] };


test('overall, with upstream test proxier settings (compare with upstream TestOverallIPTablesRules)', () => {
  assertGolden('iptables/overall-upstream-fake.txt', text(overall(), UPSTREAM_FAKE_OPTS));
});

test('overall, with kproxy defaults (no localhost NodePorts, --random-fully)', () => {
  assertGolden('iptables/overall.txt', text(overall()));
});

test('ClusterIP with three endpoints: probabilities 1/3, 1/2, then the last unconditionally', () => {
  const out = text([
    svc('ns1', 'web', { clusterIP: '172.30.0.10', ports: [port('http', 80)] }),
    slice('ns1', 'web-a', 'web', [ep('10.0.1.1'), ep('10.0.1.2'), ep('10.0.1.3')], { portName: 'http', port: 8080 }),
  ]);
  assertGolden('iptables/clusterip.txt', out);
  assert.match(out, /--probability 0\.3333333333 -j KUBE-SEP-/);
  assert.match(out, /--probability 0\.5000000000 -j KUBE-SEP-/);
});

test('no endpoints: REJECT cluster IP, external IP, LB IP and node port in filter; no nat chains', () => {
  const out = text([
    svc('ns1', 'svc1', {
      type: 'LoadBalancer', clusterIP: '172.30.0.41', externalIPs: ['192.168.99.11'], loadBalancerIPs: ['1.2.3.4'],
      ports: [port('p80', 80, 'TCP', 3001)],
    }),
  ]);
  assertGolden('iptables/no-endpoints.txt', out);
  assert.doesNotMatch(out, /KUBE-SVC-|KUBE-SEP-|KUBE-EXT-/);
});

test('only unready endpoints count as none (REJECT), as upstream', () => {
  const out = text([
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
    slice('ns1', 's1', 'svc1', [ep('10.180.0.1', { ready: false })], { portName: 'p80', port: 80 }),
  ]);
  assert.match(out, /-A KUBE-SERVICES -m comment --comment "ns1\/svc1:p80 has no endpoints" -m tcp -p tcp -d 172\.30\.0\.41 --dport 80 -j REJECT/);
  assert.doesNotMatch(out, /KUBE-SVC-/);
});

test('NodePort', () => {
  assertGolden('iptables/nodeport.txt', text([
    svc('ns1', 'np', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [port('p80', 80, 'TCP', 30080)] }),
    slice('ns1', 'np-1', 'np', [ep('10.180.0.3'), ep('10.180.0.4', { nodeName: NODE })], { portName: 'p80', port: 8080 }),
  ]));
});

test('NodePort with --nodeport-addresses: one KUBE-NODEPORTS jump per node IP, localhost skipped', () => {
  const out = text([
    svc('ns1', 'np', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [port('p80', 80, 'TCP', 30080)] }),
    slice('ns1', 'np-1', 'np', [ep('10.180.0.3')], { portName: 'p80', port: 8080 }),
  ], { ...OPTS, nodePortAddresses: ['192.168.0.0/16', '127.0.0.0/8', 'fd00::/64'], nodeIPs: ['192.168.0.2', '192.168.1.2', '127.0.0.1'], localhostNodePorts: true });
  assertGolden('iptables/nodeport-addresses.txt', out);
  assert.doesNotMatch(out, /addrtype --dst-type LOCAL -j KUBE-NODEPORTS/);
});

test('localhost NodePorts on: no "! -d 127.0.0.0/8", KUBE-FIREWALL guard, nfacct counter rule', () => {
  const objs = [
    svc('ns1', 'np', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [port('p80', 80, 'TCP', 30080)] }),
    slice('ns1', 'np-1', 'np', [ep('10.180.0.3')], { portName: 'p80', port: 8080 }),
  ];
  assertGolden('iptables/localhost-nodeports.txt', text(objs, { ...OPTS, localhostNodePorts: true, nfacct: true }));
  const off = text(objs);
  assert.match(off, /-m addrtype --dst-type LOCAL ! -d 127\.0\.0\.0\/8 -j KUBE-NODEPORTS/);
  assert.doesNotMatch(off, /KUBE-FIREWALL/);
});

test('LoadBalancer with source ranges: KUBE-FW chain, KUBE-PROXY-FIREWALL drop; a range holding the node IP admits the LB IP as source', () => {
  assertGolden('iptables/loadbalancer-source-ranges.txt', text([
    svc('ns1', 'lb', {
      type: 'LoadBalancer', clusterIP: '172.30.0.45', ports: [port('p80', 80, 'TCP', 3002)], loadBalancerIPs: ['5.6.7.8', '9.10.11.12'],
      loadBalancerSourceRanges: ['203.0.113.0/25', '192.168.0.0/24', 'fd00::/64'],
    }),
    slice('ns1', 'lb-1', 'lb', [ep('10.180.0.3')], { portName: 'p80', port: 80 }),
  ]));
});

test('externalIPs', () => {
  assertGolden('iptables/external-ips.txt', text([
    svc('ns4', 'svc4', { clusterIP: '172.30.0.44', externalIPs: ['192.168.99.33', '2001:db8::5'], ports: [port('p80', 80)] }),
    slice('ns4', 'svc4-1', 'svc4', [ep('10.180.0.4'), ep('10.180.0.5', { nodeName: NODE })], { portName: 'p80', port: 80 }),
  ]));
});

function etpLocal(endpoints: ReturnType<typeof ep>[]): Obj[] {
  return [
    svc('ns2', 'svc2', {
      type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42', ports: [port('p80', 80, 'TCP', 3001)],
      loadBalancerIPs: ['1.2.3.4'], externalIPs: ['192.168.99.22'], healthCheckNodePort: 30000,
    }),
    slice('ns2', 'svc2-1', 'svc2', endpoints, { portName: 'p80', port: 80 }),
  ];
}

test('externalTrafficPolicy Local with a local endpoint: EXT short-circuits pods and the node, else KUBE-SVL', () => {
  assertGolden('iptables/etp-local.txt', text(etpLocal([ep('10.180.0.1'), ep('10.180.0.2', { nodeName: NODE })])));
});

test('externalTrafficPolicy Local without a local endpoint: EXT keeps short-circuits only, filter DROPs external traffic', () => {
  const out = text(etpLocal([ep('10.180.0.1'), ep('10.180.0.2', { nodeName: 'other-node' })]));
  assertGolden('iptables/etp-local-no-local-endpoints.txt', out);
  assert.doesNotMatch(out, /KUBE-SVL-/);
  assert.match(out, /has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP/);
});

test('internalTrafficPolicy Local: cluster IP goes to KUBE-SVL; without local endpoints it is DROPped', () => {
  const objs = (local: boolean): Obj[] => [
    svc('ns1', 'itp', { clusterIP: '172.30.0.41', internalTrafficPolicy: 'Local', ports: [port('p80', 80)] }),
    slice('ns1', 'itp-1', 'itp', [ep('10.180.0.1'), ep('10.180.0.2', { nodeName: local ? NODE : 'other-node' })], { portName: 'p80', port: 80 }),
  ];
  assertGolden('iptables/itp-local.txt', text(objs(true)));
  const none = text(objs(false));
  assertGolden('iptables/itp-local-no-local-endpoints.txt', none);
  assert.match(none, /-A KUBE-SERVICES -m comment --comment "ns1\/itp:p80 has no local endpoints" -m tcp -p tcp -d 172\.30\.0\.41 --dport 80 -j DROP/);
  const model = renderIptables(snapshot(objs(false)), OPTS);
  assert.deepEqual(model.noLocalEndpoints, { internal: 1, external: 0 });
});

test('ClientIP affinity: recent --rcheck in the service chain, --set in the endpoint chain', () => {
  const out = text([
    svc('ns5', 'sticky', { clusterIP: '172.30.0.45', ports: [port('p80', 80)], sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 600 }),
    slice('ns5', 'sticky-1', 'sticky', [ep('10.180.0.1'), ep('10.180.0.2')], { portName: 'p80', port: 80 }),
  ]);
  assertGolden('iptables/affinity.txt', out);
  assert.match(out, /-m recent --name (KUBE-SEP-\w+) --rcheck --seconds 600 --reap -j \1/);
  assert.match(out, /-m recent --name (KUBE-SEP-\w+) --set -m tcp -p tcp -j DNAT/);
});

test('--masquerade-all: every cluster IP packet is marked', () => {
  const out = text([
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
    slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], { portName: 'p80', port: 80 }),
  ], { ...OPTS, masqueradeAll: true });
  assertGolden('iptables/masquerade-all.txt', out);
  assert.match(out, /--dport 80 -j KUBE-MARK-MASQ\n/);
  assert.doesNotMatch(out, /! -s 10\.0\.0\.0\/8/);
});

test('no cluster CIDR: no local-traffic detection, so no off-cluster masquerade and no pod short-circuit', () => {
  const objs = [
    ...etpLocal([ep('10.180.0.2', { nodeName: NODE })]),
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
    slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], { portName: 'p80', port: 80 }),
  ];
  const none = text(objs, { ...OPTS, clusterCIDRs: [] });
  assertGolden('iptables/no-cluster-cidr.txt', none);
  assert.doesNotMatch(none, /-s 10\.0\.0\.0\/8/);
  assert.doesNotMatch(none, /pod traffic for/);
  const withCIDR = text(objs);
  assert.match(withCIDR, /! -s 10\.0\.0\.0\/8 -j KUBE-MARK-MASQ/);
  assert.match(withCIDR, /"pod traffic for ns2\/svc2:p80 external destinations" -s 10\.0\.0\.0\/8 -j KUBE-SVC-/);
});

test('terminating endpoints: used only when no endpoint is ready (serving+terminating), per policy', () => {
  const out = text([
    // No ready endpoint at all: the serving+terminating ones are used; the non-serving one never.
    svc('ns1', 'term', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
    slice('ns1', 'term-1', 'term', [
      ep('10.180.0.1', { ready: false, serving: true, terminating: true }),
      ep('10.180.0.2', { ready: false, serving: false, terminating: true }),
      ep('10.180.0.3', { ready: false, serving: true, terminating: true }),
    ], { portName: 'p80', port: 80 }),
    // ETP Local: a ready remote endpoint for Cluster, only a terminating local one for Local.
    svc('ns2', 'mixed', { type: 'NodePort', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42', ports: [port('p80', 80, 'TCP', 3001)] }),
    slice('ns2', 'mixed-1', 'mixed', [
      ep('10.180.0.4'),
      ep('10.180.0.5', { ready: false, serving: true, terminating: true, nodeName: NODE }),
    ], { portName: 'p80', port: 80 }),
  ]);
  assertGolden('iptables/terminating.txt', out);
  assert.doesNotMatch(out, /10\.180\.0\.2:80/);
});

test('hairpin: each endpoint chain marks traffic from the endpoint itself for SNAT', () => {
  const out = text([
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
    slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1')], { portName: 'p80', port: 80 }),
  ]);
  assert.match(out, /-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1\/svc1:p80 -s 10\.180\.0\.1 -j KUBE-MARK-MASQ\n-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1\/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10\.180\.0\.1:80\n/);
  assert.match(out, /-A KUBE-POSTROUTING -m mark ! --mark 0x00004000\/0x00004000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000\n-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000\n/);
});

test('UDP and SCTP', () => {
  assertGolden('iptables/udp-sctp.txt', text([
    svc('kube-system', 'dns', { clusterIP: '172.30.0.10', ports: [port('dns', 53, 'UDP'), port('dns-tcp', 53, 'TCP')] }),
    slice('kube-system', 'dns-1', 'dns', [ep('10.180.0.53')], { portName: 'dns', port: 53, protocol: 'UDP' }),
    slice('kube-system', 'dns-2', 'dns', [ep('10.180.0.53')], { portName: 'dns-tcp', port: 53, protocol: 'TCP' }),
    svc('ns1', 'sctp', { type: 'NodePort', clusterIP: '172.30.0.20', ports: [port('s', 9999, 'SCTP', 30999)] }),
    slice('ns1', 'sctp-1', 'sctp', [ep('10.180.0.7')], { portName: 's', port: 9999, protocol: 'SCTP' }),
  ]));
});

test('health check node port: filter ACCEPT in KUBE-NODEPORTS, with or without local endpoints', () => {
  const out = text(etpLocal([ep('10.180.0.1')]));
  assertGolden('iptables/health-check-node-port.txt', out);
  assert.match(out, /-A KUBE-NODEPORTS -m comment --comment "ns2\/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT/);
});

test('IPv6: other-family services skipped, ::1 excluded from node ports, [ip]:port endpoints', () => {
  const opts = { ...OPTS, family: 'IPv6' as const, clusterCIDRs: ['10.0.0.0/8', 'fd00:10::/64'], nodeIPs: ['2001:db8::1'] };
  const objs: Obj[] = [
    svc('ns1', 'v6', { type: 'NodePort', clusterIP: 'fd00:172:30::41', ports: [port('p80', 80, 'TCP', 3001)], externalIPs: ['192.168.99.1', '2001:db8:99::0:1'] }),
    { ...slice('ns1', 'v6-1', 'v6', [ep('fd00:10::1')], { portName: 'p80', port: 80 }), addressType: 'IPv6' },
    svc('ns1', 'v4', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
  ];
  const model = renderIptables(snapshot(objs), opts);
  assert.deepEqual([...model.skipped], [], 'other-family ports are ignored, not reported');
  assert.deepEqual([...model.serviceChains.keys()], ['ns1/v6:p80']);
  const out = serializeFull(model).text;
  assertGolden('iptables/ipv6.txt', out);
  assert.match(out, /! -d ::1\/128 -j KUBE-NODEPORTS/);
  assert.match(out, /--to-destination \[fd00:10::1\]:80/);
});

test('large cluster (>1000 endpoints): per-endpoint comments gone, others kept', () => {
  const objs: Obj[] = [];
  for (let s = 0; s < 11; s++) {
    objs.push(svc('big', `s${s}`, { clusterIP: `172.30.1.${s + 1}`, ports: [port('p', 80)] }));
    const eps = [];
    for (let i = 0; i < 100; i++) eps.push(ep(`10.${s}.${Math.floor(i / 250)}.${(i % 250) + 1}`));
    objs.push(slice('big', `s${s}-1`, `s${s}`, eps, { portName: 'p', port: 80 }));
  }
  const small = renderIptables(snapshot(objs.slice(0, 20)), OPTS);
  assert.equal(small.largeClusterMode, false);
  assert.match(serializeFull(small).text, /-m comment --comment "big\/s0:p -> 10\.0\.0\.1:80"/);
  const model = renderIptables(snapshot(objs), OPTS);
  assert.equal(model.largeClusterMode, true);
  const out = serializeFull(model).text;
  assert.doesNotMatch(out, / -> /);
  assert.doesNotMatch(out, /-A KUBE-SEP-\S+ -m comment/);
  assert.match(out, /-A KUBE-SEP-\S+ -s 10\.0\.0\.1 -j KUBE-MARK-MASQ\n/);
  assert.match(out, /-A KUBE-SVC-\S+ -m statistic --mode random --probability 0\.0100000000 -j KUBE-SEP-/);
  assert.match(out, /-A KUBE-SERVICES -m comment --comment "big\/s0:p cluster IP"/);
  assert.match(out, /-A KUBE-SVC-\S+ -m comment --comment "big\/s0:p cluster IP" -m tcp -p tcp -d 172\.30\.1\.1 --dport 80 ! -s 10\.0\.0\.0\/8 -j KUBE-MARK-MASQ/);
});

test('invalid service ports are skipped with a reason; the rest is programmed', () => {
  const model = renderIptables(snapshot([
    svc('ns1', 'bad-ip', { clusterIP: '172.30.0.999', ports: [port('p80', 80)] }),
    svc('ns1', 'bad-port', { type: 'NodePort', clusterIP: '172.30.0.42', ports: [port('p0', 0), port('p80', 80, 'TCP', 70000)] }),
    svc('ns1', 'good', { clusterIP: '172.30.0.43', ports: [port('p80', 80)] }),
  ]), OPTS);
  assert.deepEqual([...model.skipped], [
    ['ns1/bad-ip:p80', 'invalid cluster IP "172.30.0.999"'],
    ['ns1/bad-port:p0', 'invalid port 0'],
    ['ns1/bad-port:p80', 'invalid node port 70000'],
  ]);
  assert.deepEqual([...model.serviceChains.keys()], ['ns1/good:p80']);
});

test('serviceChains lists every per-service chain each port owns, and nothing else', () => {
  const model = renderIptables(snapshot(overall()), OPTS);
  const owned = new Set<string>();
  for (const [, sc] of model.serviceChains) {
    assert.deepEqual(sc.filter, []);
    for (const c of sc.nat) {
      assert.ok(!owned.has(c), `${c} owned twice`);
      owned.add(c);
    }
  }
  const perService = [...model.nat.chains.keys()].filter((c) => /^KUBE-(SVC|SVL|EXT|FW|SEP)-/.test(c));
  assert.deepEqual([...owned].sort(), perService.sort());
  assert.equal(model.serviceChains.size, 6);
  assert.deepEqual(model.serviceChains.get(servicePortName(namespacedName('ns6', 'svc6'), 'p80'))?.nat, []);
  assert.deepEqual(model.serviceChains.get(servicePortName(namespacedName('ns5', 'svc5'), 'p80'))?.nat, ['KUBE-EXT-NUKIZ6OKUXPJNT4C', 'KUBE-FW-NUKIZ6OKUXPJNT4C', 'KUBE-SVC-NUKIZ6OKUXPJNT4C', 'KUBE-SEP-I77PXRDZVX7PMWMN']);
});

test('topology hints: Cluster traffic goes to endpoints hinted for this node\'s zone; eTP Local ignores hints', () => {
  const objects = [
    svc('ns1', 'svc1', { type: 'NodePort', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.41', ports: [port('p80', 80, 'TCP', 3001)] }),
    slice('ns1', 'svc1-1', 'svc1', [
      ep('10.180.0.1', { zoneHints: ['zone-a'] }), ep('10.180.0.2', { zoneHints: ['zone-b'], nodeName: NODE }), ep('10.180.0.3', { zoneHints: ['zone-a'] }),
    ], { portName: 'p80', port: 80 }),
  ];
  const out = text([node(NODE, { labels: { 'topology.kubernetes.io/zone': 'zone-a' } }), ...objects]);
  assertGolden('iptables/topology.txt', out);
  const svcChain = /^:(KUBE-SVC-\S+)/m.exec(out)?.[1] ?? '';
  const jumps = (chain: string, o: string): number => o.split('\n').filter((l) => l.startsWith(`-A ${chain} `) && / -j KUBE-SEP-/.test(l)).length;
  assert.equal(jumps(svcChain, out), 2, 'the cluster chain balances over the two zone-a endpoints');
  const svlChain = /^:(KUBE-SVL-\S+)/m.exec(out)?.[1] ?? '';
  assert.equal(jumps(svlChain, out), 1, 'the local chain keeps its zone-b local endpoint');
  assert.match(out, /-A KUBE-SEP-\S+ .*10\.180\.0\.2:80/, 'the local zone-b endpoint still has its chain');
  // Without the node's zone label (or in another zone), every endpoint serves Cluster traffic.
  assert.equal(jumps(svcChain, text(objects)), 3);
  assert.equal(jumps(svcChain, text([node(NODE, { labels: { 'topology.kubernetes.io/zone': 'zone-c' } }), ...objects])), 3);
});

test('a table\'s chains are a view: lookups, the rule count and each port\'s own chains agree with its iteration', () => {
  const model = renderIptables(snapshot(overall()), { ...OPTS, localhostNodePorts: true });
  for (const table of ['filter', 'nat'] as const) {
    const chains = model[table].chains;
    const listed = [...chains];
    assert.equal(chains.size, listed.length, `${table}: size`);
    assert.equal(chains.rules, listed.reduce((n, [, r]) => n + r.length, 0), `${table}: rule count`);
    const viaForEach: string[] = [];
    chains.forEach((_, name) => viaForEach.push(name));
    assert.deepEqual(viaForEach, listed.map(([name]) => name), `${table}: forEach order`);
    for (const [name, rules] of listed) {
      assert.equal(chains.get(name), rules, `${table}/${name}`);
      assert.ok(chains.has(name));
    }
    assert.equal(chains.get('KUBE-SVC-NOTACHAIN0000000'), undefined);
    assert.equal(chains.has('KUBE-SVC-NOTACHAIN0000000'), false);
    for (const [spn, sc] of model.serviceChains) assert.deepEqual(chains.own(spn)?.ownChains, sc[table], `${table}: ${spn}'s own chains`);
  }
  // The fixed chains: the top-level ones first, then KUBE-FIREWALL (localhost NodePorts).
  assert.deepEqual([...model.filter.chains.fixed.keys()], ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-FIREWALL']);
  assert.equal(model.nat.chains.get('KUBE-SERVICES')?.at(-1)?.includes('-j KUBE-NODEPORTS'), true, 'the jump to KUBE-NODEPORTS is the last rule of KUBE-SERVICES');
});

test('two service ports declaring one chain: the first lookup of a name says so, as upstream\'s restore would fail', () => {
  const model = renderIptables(snapshot(overall()), OPTS);
  const [a, b] = [...model.serviceChains.keys()].filter((spn) => (model.nat.chains.own(spn)?.ownChains.length ?? 0) > 0);
  assert.ok(a !== undefined && b !== undefined);
  const pa = model.nat.chains.own(a);
  const pb = model.nat.chains.own(b);
  assert.ok(pa && pb);
  const clash = new TableChains('nat', TOP_LEVEL_CHAINS.nat, EMPTY, new SortedPorts([a, b], [pa, { ...pb, ownChains: [pa.ownChains[0] ?? '', ...pb.ownChains.slice(1)] }]), EMPTY);
  assert.throws(() => clash.get('KUBE-SVC-NOTACHAIN0000000'), new RegExp(`chain nat/${pa.ownChains[0]} declared twice`));
});
