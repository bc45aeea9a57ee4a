/**
 * IPVS mode's apply step against a fake kernel (test/helpers/fake-ipvs.ts) speaking the real
 * tools' formats: only differences are written, graceful termination, per-service refusals,
 * failed tools, --cleanup.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IpvsBackend, removeIpvsRules } from '../../../src/backends/ipvs/backend.js';
import { parseDeviceAddresses, parseIpvsadmConnections, parseIpvsadmSave } from '../../../src/backends/ipvs/kernel-state.js';
import type { EndpointSliceObject, ServiceObject } from '../../../src/core/objects.js';
import { SnapshotBuilder } from '../../../src/core/snapshot.js';
import { memoryLogger } from '../../../src/observability/log.js';
import { ProxyMetrics } from '../../../src/observability/metrics.js';
import { FakeClock } from '../../../src/platform/clock.js';
import { Conntrack } from '../../../src/platform/conntrack.js';
import { Iptables } from '../../../src/platform/iptables.js';
import { FakeIpvsKernel } from '../../helpers/fake-ipvs.js';
import { ep, slice, svc } from '../../helpers/objects.js';

function setup(over: { excludeCIDRs?: string[] } = {}) {
  const kernel = new FakeIpvsKernel();
  const metrics = new ProxyMetrics();
  const log = memoryLogger();
  const clock = new FakeClock();
  const sysctls: [string, string][] = [];
  const backend = new IpvsBackend({
    exec: kernel.exec, iptables: new Iptables({ exec: kernel.exec }), conntrack: new Conntrack(kernel.exec), clock, log, metrics,
    render: { nodeName: 'n1', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.8.0/21'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4', scheduler: 'rr' },
    strictARP: true, timeoutsMs: { tcp: 900_000, tcpFin: 0, udp: 0 }, gracefulCheckMs: 1000,
    sysctl: (p, v) => sysctls.push([p, v]),
    ...over,
  });
  const builder = new SnapshotBuilder('n1');
  const add = (o: ServiceObject | EndpointSliceObject): void => {
    if (o.kind === 'Service') builder.handle({ kind: 'Service', type: 'add', object: o });
    else if (o.kind === 'EndpointSlice') builder.handle({ kind: 'EndpointSlice', type: 'add', object: o });
  };
  const update = (o: ReturnType<typeof slice> | ReturnType<typeof svc>, prev: ReturnType<typeof slice> | ReturnType<typeof svc>): void => {
    if (o.kind === 'Service' && prev.kind === 'Service') builder.handle({ kind: 'Service', type: 'update', object: o, previous: prev });
    else if (o.kind === 'EndpointSlice' && prev.kind === 'EndpointSlice') builder.handle({ kind: 'EndpointSlice', type: 'update', object: o, previous: prev });
  };
  return { kernel, metrics, log, clock, backend, builder, add, update, sysctls };
}

const web = svc('ns1', 'web', { clusterIP: '198.18.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }] });
const webEps = (ips: string[]) => slice('ns1', 'web-1', 'web', ips.map((ip) => ep(ip)), { portName: 'http', port: 8080 });

test('parsers read the tools\' real formats', () => {
  const vs = parseIpvsadmSave('-A -t 198.18.0.10:80 -s rr\n-a -t 198.18.0.10:80 -r 198.18.1.2:80 -m -w 1\n-A -u 198.18.0.53:53 -s wrr -p 30\n-a -u 198.18.0.53:53 -r 198.18.1.3:53 -g -w 3\n-A -f 7 -s rr\n-a -f 7 -r 1.2.3.4:0 -g -w 1\n');
  assert.deepEqual(vs.map((v) => [v.protocol, v.ip, v.port, v.scheduler, v.persistence, v.realServers.map((r) => [r.ip, r.port, r.weight, r.forwarding])]), [
    ['TCP', '198.18.0.10', 80, 'rr', 0, [['198.18.1.2', 80, 1, 'masq']]],
    ['UDP', '198.18.0.53', 53, 'wrr', 30, [['198.18.1.3', 53, 3, 'gate']]],
  ]);
  assert.throws(() => parseIpvsadmSave('-X something\n'), /ipvsadm -Sn line 1: unexpected/);
  const conns = parseIpvsadmConnections('IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nTCP  198.18.0.10:80 rr\n  -> 198.18.1.2:80                Masq    0      3          1         \nUDP  198.18.0.53:53 rr persistent 30\n  -> 198.18.1.3:53                Masq    1      0          7\n');
  assert.deepEqual([...conns], [['TCP:198.18.0.10:80/198.18.1.2:80', { active: 3, inactive: 1 }], ['UDP:198.18.0.53:53/198.18.1.3:53', { active: 0, inactive: 7 }]]);
  assert.deepEqual(parseDeviceAddresses('5: kube-ipvs0    inet 198.18.0.10/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n5: kube-ipvs0    inet6 fd00::a/128 scope global \\ valid_lft forever'), ['198.18.0.10', 'fd00::a']);
});

test('first sync: sysctls and timeouts, dummy device, ipsets, rules, jumps, addresses, then virtual servers', async () => {
  const { kernel, backend, builder, add, sysctls } = setup();
  add(web);
  add(webEps(['198.18.10.2', '198.18.10.3']));
  await backend.sync(builder.next());
  assert.deepEqual(sysctls.map(([p]) => p), ['net/ipv4/vs/conntrack', 'net/ipv4/vs/expire_nodest_conn', 'net/ipv4/vs/expire_quiescent_template', 'net/ipv4/ip_forward', 'net/ipv4/conf/all/arp_ignore', 'net/ipv4/conf/all/arp_announce']);
  assert.deepEqual(kernel.timeouts, ['900', '0', '0'], 'ipvsadm --set tcp tcpfin udp');
  assert.deepEqual(kernel.dump(), ['TCP 198.18.0.10:80 rr', '  198.18.10.2:8080 w1', '  198.18.10.3:8080 w1']);
  assert.deepEqual(kernel.device, ['198.18.0.10']);
  assert.deepEqual([...(kernel.sets.get('KUBE-CLUSTER-IP')?.entries ?? [])], ['198.18.0.10,tcp:80']);
  assert.equal(kernel.sets.size, 17, 'every upstream ipset exists');
  const order = ['ipset', 'iptables-restore', 'ip', 'ipvsadm'].map((c) => kernel.calls.findIndex((x) => x.cmd === c && (c !== 'ip' || x.args[0] === '-force') && (c !== 'ipvsadm' || x.args[0] === '-R')));
  assert.deepEqual([...order].sort((a, b) => a - b), order, 'ipsets, then rules, then addresses, then virtual servers');
  assert.equal(kernel.inputs('ipvsadm -R').length, 1);
  assert.ok(kernel.calls.some((c) => c.cmd === 'iptables' && c.args.join(' ').includes('-I INPUT -m comment --comment kubernetes ipvs access filter -j KUBE-IPVS-FILTER')));
});

test('a second sync with nothing changed writes no ipvsadm or ipset change', async () => {
  const { kernel, backend, builder, add } = setup();
  add(web);
  add(webEps(['198.18.10.2']));
  await backend.sync(builder.next());
  const before = kernel.calls.length;
  await backend.sync(builder.next(true));
  const after = kernel.calls.slice(before);
  assert.equal(after.filter((c) => (c.cmd === 'ipvsadm' && c.args[0] === '-R') || (c.cmd === 'ipset' && c.args.includes('restore')) || (c.cmd === 'ip' && c.args[0] === '-force')).length, 0);
});

test('endpoint change: only the difference (-a new, graceful -e weight 0 for the removed busy TCP one), then deleted once drained', async () => {
  const { kernel, backend, builder, add, update, clock, metrics } = setup();
  add(web);
  const v1 = webEps(['198.18.10.2', '198.18.10.3']);
  add(v1);
  await backend.sync(builder.next());
  kernel.setConnections('TCP 198.18.0.10:80', '198.18.10.3:8080', 1, 0);
  update(webEps(['198.18.10.2', '198.18.10.4']), v1);
  await backend.sync(builder.next());
  const second = kernel.inputs('ipvsadm -R')[1] ?? '';
  assert.deepEqual(second.trim().split('\n').sort(), [
    '-a -t 198.18.0.10:80 -r 198.18.10.4:8080 -m -w 1',
    '-e -t 198.18.0.10:80 -r 198.18.10.3:8080 -m -w 0',
  ]);
  assert.deepEqual([...backend.terminating], ['TCP:198.18.0.10:80/198.18.10.3:8080']);
  assert.equal((await metrics.registry.getSingleMetric('kproxy_ipvs_terminating_real_servers')?.get())?.values[0]?.value, 1);
  // Still busy at the first check: kept at weight 0.
  await clock.advance(1000);
  assert.ok(kernel.dump().includes('  198.18.10.3:8080 w0'));
  // Connection ended: the next check deletes it, without a sync.
  kernel.setConnections('TCP 198.18.0.10:80', '198.18.10.3:8080', 0, 0);
  await clock.advance(1000);
  assert.deepEqual(kernel.dump(), ['TCP 198.18.0.10:80 rr', '  198.18.10.2:8080 w1', '  198.18.10.4:8080 w1']);
  assert.equal(backend.terminating.size, 0);
  assert.equal(clock.pendingTimers, 0, 'no more checks once nothing terminates');
});

test('a removed TCP real server without connections, and UDP ones, are deleted at once', async () => {
  const { kernel, backend, builder, add, update } = setup();
  const dns = svc('ns1', 'dns', { clusterIP: '198.18.0.53', ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 }] });
  const d1 = slice('ns1', 'dns-1', 'dns', [ep('198.18.10.2'), ep('198.18.10.3')], { portName: 'dns', port: 53, protocol: 'UDP' });
  add(web); add(dns); add(d1);
  const w1 = webEps(['198.18.10.2', '198.18.10.3']);
  add(w1);
  await backend.sync(builder.next());
  kernel.setConnections('UDP 198.18.0.53:53', '198.18.10.3:53', 0, 5);
  update(slice('ns1', 'dns-1', 'dns', [ep('198.18.10.2')], { portName: 'dns', port: 53, protocol: 'UDP' }), d1);
  update(webEps(['198.18.10.2']), w1);
  await backend.sync(builder.next());
  assert.deepEqual((kernel.inputs('ipvsadm -R')[1] ?? '').trim().split('\n').sort(), [
    '-d -t 198.18.0.10:80 -r 198.18.10.3:8080',
    '-d -u 198.18.0.53:53 -r 198.18.10.3:53',
  ]);
  assert.ok(kernel.calls.some((c) => c.cmd === 'conntrack' && c.args.join(' ') === '-D -p udp --orig-dst 198.18.0.53 --dst-nat 198.18.10.3'), 'UDP conntrack entries of the removed endpoint are cleared');
  assert.equal(backend.terminating.size, 0);
});

test('a terminating real server that comes back is restored to its weight (no delete)', async () => {
  const { kernel, backend, builder, add, update } = setup();
  add(web);
  const a = webEps(['198.18.10.2', '198.18.10.3']);
  add(a);
  await backend.sync(builder.next());
  kernel.setConnections('TCP 198.18.0.10:80', '198.18.10.3:8080', 2, 0);
  const b = webEps(['198.18.10.2']);
  update(b, a);
  await backend.sync(builder.next());
  update(webEps(['198.18.10.2', '198.18.10.3']), b);
  await backend.sync(builder.next());
  assert.equal((kernel.inputs('ipvsadm -R')[2] ?? '').trim(), '-e -t 198.18.0.10:80 -r 198.18.10.3:8080 -m -w 1');
  assert.equal(backend.terminating.size, 0);
});

test('service removed: its virtual server, ipset entries and address go; foreign and excluded virtual servers stay', async () => {
  const { kernel, backend, builder, add } = setup({ excludeCIDRs: ['198.18.250.0/24'] });
  kernel.vs.set('TCP 198.18.250.1:443', { proto: 'TCP', addr: '198.18.250.1:443', sched: 'rr', persist: 0, flags: '', rs: [] });
  add(web);
  add(webEps(['198.18.10.2']));
  await backend.sync(builder.next());
  builder.handle({ kind: 'Service', type: 'delete', object: web });
  await backend.sync(builder.next());
  assert.deepEqual(kernel.dump(), ['TCP 198.18.250.1:443 rr'], 'only the excluded virtual server is left');
  assert.deepEqual(kernel.device, []);
  assert.equal(kernel.sets.get('KUBE-CLUSTER-IP')?.entries.size, 0);
  assert.match(kernel.inputs('ipset').at(-1) ?? '', /^del KUBE-CLUSTER-IP 198\.18\.0\.10,tcp:80$/m);
  assert.match(kernel.inputs('ip').at(-1) ?? '', /^addr del 198\.18\.0\.10\/32 dev kube-ipvs0$/m);
});

test('a virtual server the kernel refuses is an error of its service only; the others are programmed', async () => {
  const { kernel, backend, builder, add, log, metrics } = setup();
  kernel.refuseSchedulers.add('mh');
  // Sorted first, so a restore that stops at the refusal would lose the others without the retry.
  add(svc('ns0', 'aaa', { clusterIP: '198.18.0.5', ports: [{ name: 'p', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 0 }], annotations: { 'kproxy.io/scheduler': 'mh' } }));
  add(web);
  add(webEps(['198.18.10.2']));
  await backend.sync(builder.next());
  assert.deepEqual(kernel.dump(), ['TCP 198.18.0.10:80 rr', '  198.18.10.2:8080 w1']);
  assert.deepEqual([...backend.refused.keys()], ['ns0/aaa:p']);
  assert.match(backend.refused.get('ns0/aaa:p' as never) ?? '', /the kernel refused "-A -t 198\.18\.0\.5:80 -s mh -b mh-port": Memory allocation problem/);
  assert.ok(log.lines.some((l) => l.includes('IPVS refused its virtual server') && l.includes('ns0/aaa:p')));
  assert.equal((await metrics.registry.getSingleMetric('kproxy_sync_proxy_rules_skipped_service_ports')?.get())?.values[0]?.value, 1);
  // The module becomes available: the next sync programs it.
  kernel.refuseSchedulers.clear();
  await backend.sync(builder.next(true));
  assert.ok(kernel.dump().includes('TCP 198.18.0.5:80 mh'));
  assert.equal(backend.refused.size, 0);
});

test('a failing tool fails the sync (the proxier retries it as a full sync) and counts in the metric', async () => {
  const { kernel, backend, builder, add, metrics } = setup();
  add(web);
  add(webEps(['198.18.10.2']));
  kernel.failing.add('ipset');
  await assert.rejects(backend.sync(builder.next()), /ipset -exist restore failed \(exit 1\): ipset v7\.17: Kernel error received/);
  assert.equal((await metrics.registry.getSingleMetric('kproxy_sync_proxy_rules_ipvs_restore_failures_total')?.get())?.values.find((v) => v.labels.tool === 'ipset')?.value, 1);
  assert.equal(kernel.vs.size, 0, 'nothing programmed past the failure');
  kernel.failing.delete('ipset');
  await backend.sync(builder.next(true));
  assert.deepEqual(kernel.dump(), ['TCP 198.18.0.10:80 rr', '  198.18.10.2:8080 w1']);
});

test('a virtual server changed by someone (scheduler) is put back with -E; one a user added to ours is deleted', async () => {
  const { kernel, backend, builder, add } = setup();
  add(web);
  add(webEps(['198.18.10.2']));
  await backend.sync(builder.next());
  const v = kernel.vs.get('TCP 198.18.0.10:80');
  if (v) v.sched = 'wlc';
  kernel.vs.set('TCP 198.18.0.99:80', { proto: 'TCP', addr: '198.18.0.99:80', sched: 'rr', persist: 0, flags: '', rs: [] });
  await backend.sync(builder.next(true));
  assert.deepEqual((kernel.inputs('ipvsadm -R')[1] ?? '').trim().split('\n'), ['-D -t 198.18.0.99:80', '-E -t 198.18.0.10:80 -s rr']);
});

test('--cleanup removes virtual servers, kube-ipvs0, rules and every ipset; nothing to do without IPVS', async () => {
  const { kernel, backend, builder, add } = setup();
  add(web);
  add(webEps(['198.18.10.2']));
  await backend.sync(builder.next());
  const removed = await removeIpvsRules(kernel.exec, new Iptables({ exec: kernel.exec }));
  assert.equal(kernel.vs.size, 0);
  assert.equal(kernel.device, undefined);
  assert.equal(kernel.sets.size, 0);
  assert.ok(removed.includes('ipvs/virtual-servers') && removed.includes('link/kube-ipvs0') && removed.includes('ipset/KUBE-IPVS-IPS'));
  const bare = new FakeIpvsKernel();
  bare.failing.add('ipvsadm');
  assert.deepEqual(await removeIpvsRules(bare.exec, new Iptables({ exec: bare.exec })), []);
});

test('--dry-run text has the three sections and runs no tool', () => {
  const { kernel, backend, builder, add } = setup();
  add(web);
  add(webEps(['198.18.10.2']));
  const out = backend.dryRun(builder.next());
  assert.match(out, /^# ipvsadm-restore\n-A -t 198\.18\.0\.10:80 -s rr\n-a -t 198\.18\.0\.10:80 -r 198\.18\.10\.2:8080 -m -w 1\n# ipset -exist restore\n/m);
  assert.match(out, /^# iptables-restore --noflush\n\*filter\n/m);
  assert.equal(kernel.calls.length, 0);
});
