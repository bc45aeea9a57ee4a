/**
 * IPVS render + serialization, checked by golden files (test/golden/ipvs/): the three texts a
 * full sync applies. Each golden was read against upstream's syncProxyRules/writeIptablesRules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SCHEDULER_NAMES } from '../../../src/core/annotations.js';
import { servicePortName, namespacedName } from '../../../src/core/ids.js';
import { renderIpvs } from '../../../src/backends/ipvs/render.js';
import { assertGolden } from '../../helpers/golden.js';
import { ep, slice, svc } from '../../helpers/objects.js';
import { NODE, OPTS, overall, port, snapshot, text } from './fixture.js';

const spn = (ns: string, name: string, p: string) => servicePortName(namespacedName(ns, name), p);

test('overall: the upstream world (six services covering most features)', () => {
  assertGolden('ipvs/overall.txt', text(overall()));
});

test('ClusterIP: one virtual server, rr, masquerade real servers with weight 1, address on kube-ipvs0', () => {
  const out = text([
    svc('ns1', 'web', { clusterIP: '172.30.0.10', ports: [port('http', 80)] }),
    slice('ns1', 'web-a', 'web', [ep('10.0.1.1'), ep('10.0.1.2'), ep('10.0.1.3')], { portName: 'http', port: 8080 }),
  ]);
  assertGolden('ipvs/clusterip.txt', out);
  assert.match(out, /^-A -t 172\.30\.0\.10:80 -s rr$/m);
  assert.match(out, /^-a -t 172\.30\.0\.10:80 -r 10\.0\.1\.2:8080 -m -w 1$/m);
  assert.match(out, /^add KUBE-CLUSTER-IP 172\.30\.0\.10,tcp:80$/m);
  assert.match(out, /^add KUBE-IPVS-IPS 172\.30\.0\.10$/m);
});

test('NodePort: a virtual server per node address, the port in KUBE-NODE-PORT-TCP, masqueraded', () => {
  const out = text([
    svc('ns1', 'np', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [port('p80', 80, 'TCP', 30080)] }),
    slice('ns1', 'np-1', 'np', [ep('10.180.0.3'), ep('10.180.0.4', { nodeName: NODE })], { portName: 'p80', port: 8080 }),
  ], { ...OPTS, nodeIPs: ['192.168.0.2', '192.168.1.2', '127.0.0.1'] });
  assertGolden('ipvs/nodeport.txt', out);
  assert.match(out, /^-A -t 192\.168\.1\.2:30080 -s rr$/m);
  assert.doesNotMatch(out, /127\.0\.0\.1:30080/, 'no loopback virtual server');
  assert.match(out, /^add KUBE-NODE-PORT-TCP 30080$/m);
  assert.match(out, /^add KUBE-LOOP-BACK 10\.180\.0\.4,tcp:8080,10\.180\.0\.4$/m, 'hairpin entry only for the local endpoint');
  assert.doesNotMatch(out, /KUBE-LOOP-BACK 10\.180\.0\.3/);
  assert.match(out, /-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ/);
});

test('externalTrafficPolicy Local: LOCAL sets, local endpoints only on external virtual servers', () => {
  const out = text([
    svc('ns1', 'lb', {
      type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42', externalIPs: ['192.168.99.22'],
      loadBalancerIPs: ['1.2.3.4'], healthCheckNodePort: 30000, ports: [port('p80', 80, 'TCP', 3001)],
    }),
    slice('ns1', 'lb-1', 'lb', [ep('10.180.0.2'), ep('10.180.0.5', { nodeName: NODE })], { portName: 'p80', port: 80 }),
  ]);
  assertGolden('ipvs/etp-local.txt', out);
  assert.match(out, /^add KUBE-LOAD-BALANCER-LOCAL 1\.2\.3\.4,tcp:80$/m);
  assert.match(out, /^add KUBE-EXTERNAL-IP-LOCAL 192\.168\.99\.22,tcp:80$/m);
  assert.match(out, /^add KUBE-NODE-PORT-LOCAL-TCP 3001$/m);
  assert.match(out, /^add KUBE-HEALTH-CHECK-NODE-PORT 30000$/m);
  // ClusterIP: both endpoints; LB IP: only the local one.
  assert.match(out, /^-a -t 172\.30\.0\.42:80 -r 10\.180\.0\.2:80 -m -w 1$/m);
  assert.doesNotMatch(out, /^-a -t 1\.2\.3\.4:80 -r 10\.180\.0\.2:80/m);
  assert.match(out, /^-a -t 1\.2\.3\.4:80 -r 10\.180\.0\.5:80 -m -w 1$/m);
});

test('externalTrafficPolicy Local without local endpoints falls back to the cluster endpoints (upstream PR 97081)', () => {
  const out = text([
    svc('ns1', 'lb', { type: 'NodePort', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42', ports: [port('p80', 80, 'TCP', 3001)] }),
    slice('ns1', 'lb-1', 'lb', [ep('10.180.0.2')], { portName: 'p80', port: 80 }),
  ]);
  assertGolden('ipvs/etp-local-no-local-endpoints.txt', out);
  assert.match(out, /^-a -t 192\.168\.0\.2:3001 -r 10\.180\.0\.2:80 -m -w 1$/m);
});

test('loadBalancerSourceRanges: FW set, source CIDRs, and node access blocked in KUBE-IPVS-OUT-FILTER', () => {
  const out = text([
    svc('ns1', 'lb', {
      type: 'LoadBalancer', clusterIP: '172.30.0.45', loadBalancerIPs: ['5.6.7.8'], loadBalancerSourceRanges: [' 203.0.113.0/25', '203.0.113.200/32'],
      ports: [port('p80', 80, 'TCP', 3002)],
    }),
    slice('ns1', 'lb-1', 'lb', [ep('10.180.0.3')], { portName: 'p80', port: 80 }),
  ]);
  assertGolden('ipvs/loadbalancer-source-ranges.txt', out);
  assert.match(out, /^add KUBE-LOAD-BALANCER-SOURCE-CIDR 5\.6\.7\.8,tcp:80,203\.0\.113\.0\/25$/m);
  assert.match(out, /^add KUBE-LOAD-BALANCER-SOURCE-CIDR 5\.6\.7\.8,tcp:80,203\.0\.113\.200$/m, 'host nets as ipset save prints them');
  assert.match(out, /^-A KUBE-IPVS-OUT-FILTER -s 5\.6\.7\.8 -m ipvs --vaddr 5\.6\.7\.8 --vproto tcp --vport 80 -j DROP$/m);
  assert.match(out, /-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip \+ port for load balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL/);
});

test('loadBalancerSourceRanges containing the node: the LB IP itself is an allowed source', () => {
  const out = text([
    svc('ns1', 'lb', {
      type: 'LoadBalancer', clusterIP: '172.30.0.45', loadBalancerIPs: ['5.6.7.8'], loadBalancerSourceRanges: ['192.168.0.0/24'],
      ports: [port('p80', 80, 'TCP', 3002)],
    }),
    slice('ns1', 'lb-1', 'lb', [ep('10.180.0.3')], { portName: 'p80', port: 80 }),
  ]);
  assert.match(out, /^add KUBE-LOAD-BALANCER-SOURCE-IP 5\.6\.7\.8,tcp:80,5\.6\.7\.8$/m);
  assert.doesNotMatch(out, /-A KUBE-IPVS-OUT-FILTER/);
});

test('ClientIP affinity: persistence with the timeout on every virtual server of the port', () => {
  const out = text([
    svc('ns1', 'sticky', { type: 'NodePort', clusterIP: '172.30.0.50', sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 10800, ports: [port('p80', 80, 'TCP', 3005)] }),
    slice('ns1', 's-1', 'sticky', [ep('10.180.0.1'), ep('10.180.0.2')], { portName: 'p80', port: 80 }),
  ]);
  assertGolden('ipvs/affinity.txt', out);
  assert.match(out, /^-A -t 172\.30\.0\.50:80 -s rr -p 10800$/m);
  assert.match(out, /^-A -t 192\.168\.0\.2:3005 -s rr -p 10800$/m);
});

test('schedulers: --ipvs-scheduler default, the kproxy.io/scheduler annotation per service, mh gets mh-port', () => {
  const objs = SCHEDULER_NAMES.map((s, i) => svc('ns1', `s-${s}`, {
    clusterIP: `172.30.1.${i + 1}`, ports: [port('p', 80)], annotations: { 'kproxy.io/scheduler': s },
  }));
  objs.push(svc('ns1', 'default', { clusterIP: '172.30.1.100', ports: [port('p', 80)] }));
  const out = text(objs, { ...OPTS, scheduler: 'wlc' });
  assertGolden('ipvs/schedulers.txt', out);
  SCHEDULER_NAMES.forEach((s, i) => assert.match(out, new RegExp(`^-A -t 172\\.30\\.1\\.${i + 1}:80 -s ${s}${s === 'mh' ? ' -b mh-port' : ''}$`, 'm')));
  assert.match(out, /^-A -t 172\.30\.1\.100:80 -s wlc$/m);
});

test('weights from kproxy.io/weights become real-server weights (0 = quiesced)', () => {
  const out = text([
    svc('ns1', 'w', { clusterIP: '172.30.0.60', ports: [port('p', 80)], annotations: { 'kproxy.io/scheduler': 'wrr' } }),
    slice('ns1', 'w-1', 'w', [ep('10.180.0.1'), ep('10.180.0.2'), ep('10.180.0.3')], {
      portName: 'p', port: 80, annotations: { 'kproxy.io/weights': '{"10.180.0.1": 5, "10.180.0.2": 0, "10.180.0.3": 65535}' },
    }),
  ]);
  assertGolden('ipvs/weights.txt', out);
  assert.match(out, /-r 10\.180\.0\.1:80 -m -w 5$/m);
  assert.match(out, /-r 10\.180\.0\.2:80 -m -w 0$/m);
  assert.match(out, /-r 10\.180\.0\.3:80 -m -w 65535$/m);
});

test('UDP and SCTP: -u and --sctp-service, UDP node ports in a bitmap set, SCTP in the hash:ip,port set per node IP', () => {
  const out = text([
    svc('ns1', 'dns', { type: 'NodePort', clusterIP: '172.30.0.53', ports: [port('dns', 53, 'UDP', 30053)] }),
    slice('ns1', 'dns-1', 'dns', [ep('10.180.0.1')], { portName: 'dns', port: 53, protocol: 'UDP' }),
    svc('ns1', 'sctp', { type: 'NodePort', clusterIP: '172.30.0.54', ports: [port('s', 3868, 'SCTP', 30868)], externalTrafficPolicy: 'Local' }),
    slice('ns1', 'sctp-1', 'sctp', [ep('10.180.0.2', { nodeName: NODE })], { portName: 's', port: 3868, protocol: 'SCTP' }),
  ]);
  assertGolden('ipvs/udp-sctp.txt', out);
  assert.match(out, /^-A -u 172\.30\.0\.53:53 -s rr$/m);
  assert.match(out, /^-A --sctp-service 172\.30\.0\.54:3868 -s rr$/m);
  assert.match(out, /^add KUBE-NODE-PORT-UDP 30053$/m);
  assert.match(out, /^add KUBE-NODE-PORT-SCTP-HASH 192\.168\.0\.2,sctp:30868$/m);
  assert.match(out, /^add KUBE-NODE-PORT-LOCAL-SCTP-HASH 192\.168\.0\.2,sctp:30868$/m);
});

test('masquerade-all and no cluster CIDR change only the KUBE-CLUSTER-IP rule', () => {
  const objs = [svc('ns1', 'web', { clusterIP: '172.30.0.10', ports: [port('http', 80)] })];
  assert.match(text(objs), /--match-set KUBE-CLUSTER-IP dst,dst ! -s 10\.0\.0\.0\/8 -j KUBE-MARK-MASQ/);
  assert.match(text(objs, { ...OPTS, masqueradeAll: true }), /--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ/);
  const noCIDR = text(objs, { ...OPTS, clusterCIDRs: [] });
  assertGolden('ipvs/no-cluster-cidr.txt', noCIDR);
  assert.match(noCIDR, /--match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ/);
});

test('external IP already on the node is not bound to kube-ipvs0', () => {
  const m = renderIpvs(snapshot([
    svc('ns1', 'e', { clusterIP: '172.30.0.70', externalIPs: ['192.168.0.2', '192.168.99.9'], ports: [port('p', 80)] }),
  ]), { ...OPTS, localAddresses: ['192.168.0.2'] });
  assert.deepEqual(m.addresses, ['172.30.0.70', '192.168.99.9']);
  assert.deepEqual(m.ipsets.find((s) => s.name === 'KUBE-IPVS-IPS')?.entries, ['172.30.0.70', '192.168.99.9']);
});

test('no endpoints: the virtual server exists without real servers (IPVS then resets connections)', () => {
  const m = renderIpvs(snapshot([svc('ns1', 'empty', { clusterIP: '172.30.0.80', ports: [port('p', 80)] })]), OPTS);
  assert.equal(m.virtualServers.length, 1);
  assert.deepEqual(m.virtualServers[0]?.realServers, []);
});

test('a bad service is skipped with its reason; the others are rendered', () => {
  const snap = snapshot([
    svc('ns1', 'bad', { clusterIP: '172.30.0.90', ports: [port('p', 80)] }),
    svc('ns1', 'good', { clusterIP: '172.30.0.91', ports: [port('p', 80)] }),
  ]);
  // A scheduler the snapshot cannot carry (sources reject it) still fails safe here.
  const m = renderIpvs(snap, { ...OPTS, scheduler: 'fancy' as never });
  assert.match(m.skipped.get(spn('ns1', 'bad', 'p')) ?? '', /unknown IPVS scheduler "fancy"/);
  const sp = snap.servicePorts.get(spn('ns1', 'good', 'p'));
  assert.ok(sp);
  const eps = [{ ...epOf('10.180.0.1'), weight: 70000 }];
  const snap2 = { ...snap, endpoints: new Map([[spn('ns1', 'good', 'p'), eps]]) };
  const m2 = renderIpvs(snap2, OPTS);
  assert.match(m2.skipped.get(spn('ns1', 'good', 'p')) ?? '', /weight 70000 of endpoint 10\.180\.0\.1:80 is outside IPVS's range 0\.\.65535/);
  assert.ok(m2.virtualServers.some((v) => v.ip === '172.30.0.90'), 'the other service is still programmed');
});

function epOf(ip: string) {
  return { key: `${ip}:80`, ip, port: 80, ready: true, serving: true, terminating: false, nodeName: undefined, zone: undefined, isLocal: false, weight: 1 };
}

test('strict ARP and the sysctls upstream sets', async () => {
  const { ipvsSysctls } = await import('../../../src/backends/ipvs/names.js');
  assert.deepEqual(ipvsSysctls(false).map(([k]) => k), ['net/ipv4/vs/conntrack', 'net/ipv4/vs/expire_nodest_conn', 'net/ipv4/vs/expire_quiescent_template', 'net/ipv4/ip_forward']);
  assert.deepEqual(ipvsSysctls(true).slice(4), [['net/ipv4/conf/all/arp_ignore', '1'], ['net/ipv4/conf/all/arp_announce', '2']]);
});
