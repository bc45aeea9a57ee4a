/** iptables mode's apply step against a fake exec: which tool runs, with what, and when. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FULL_SYNC_PERIOD_MS, freshNodeExtra, IptablesBackend } from '../../../src/backends/iptables/backend.js';
import { renderIptables } from '../../../src/backends/iptables/render.js';
import { serializeFull } from '../../../src/backends/iptables/serialize.js';
import { SnapshotBuilder } from '../../../src/core/snapshot.js';
import { memoryLogger } from '../../../src/observability/log.js';
import { ProxyMetrics } from '../../../src/observability/metrics.js';
import { FakeClock } from '../../../src/platform/clock.js';
import { Conntrack } from '../../../src/platform/conntrack.js';
import { FakeExec, type ExecCall } from '../../../src/platform/exec.js';
import { Iptables } from '../../../src/platform/iptables.js';
import { emptyRuleset, parseIptablesSave } from '../../../src/netfilter/iptables-save.js';
import { ep, slice, svc } from '../../helpers/objects.js';

function setup(stageChains?: number) {
  const fake = new FakeExec();
  const clock = new FakeClock();
  const metrics = new ProxyMetrics();
  const log = memoryLogger();
  const backend = new IptablesBackend({
    iptables: new Iptables({ exec: fake.exec }), conntrack: new Conntrack(fake.exec), log, metrics, clock, ...(stageChains === undefined ? {} : { stageChains }),
    render: { nodeName: 'n1', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: false, family: 'IPv4' },
  });
  const builder = new SnapshotBuilder('n1');
  return { fake, metrics, log, backend, builder, clock };
}

const restores = (calls: readonly ExecCall[]): string[] => calls.filter((c) => c.cmd === 'iptables-restore').map((c) => c.input ?? '');

/** The `-A` rules a restore input writes into one table (what sync_proxy_rules_iptables_last reports). */
function rulesIn(text: string, table: string): number {
  const section = text.slice(text.indexOf(`*${table}\n`), text.indexOf('\nCOMMIT', text.indexOf(`*${table}\n`)));
  return section.split('\n').filter((l) => l.startsWith('-A ')).length;
}

test('first sync is full: one atomic restore with counters, carrying the canaries and the jumps; stale chains are deleted', async () => {
  const { fake, backend, builder, metrics } = setup();
  fake.respond((c) => c.cmd === 'iptables-save' && c.args.includes('nat'), { stdout: '*nat\n:KUBE-SVC-STALESTALESTALE1 - [0:0]\n:KUBE-SERVICES - [0:0]\n:OTHER-CHAIN - [0:0]\nCOMMIT\n' });
  fake.respond((c) => c.cmd === 'iptables' && (c.args.includes('-C') || c.args.includes('-S')), { code: 1 });
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]) });
  await backend.sync(builder.next());
  const [text, ...more] = restores(fake.calls);
  assert.equal(more.length, 0, 'exactly one restore');
  assert.deepEqual(fake.calls.find((c) => c.cmd === 'iptables-restore')?.args, ['-w', '5', '--noflush', '--counters']);
  assert.ok(text?.includes('*filter\n') && text.includes('*nat\n'));
  assert.match(text ?? '', /^:KUBE-SVC-STALESTALESTALE1 - \[0:0\]$/m);
  assert.match(text ?? '', /^-X KUBE-SVC-STALESTALESTALE1$/m);
  assert.doesNotMatch(text ?? '', /OTHER-CHAIN/, 'chains kproxy does not own are left alone');
  // Canaries in mangle, filter and nat, and every jump prepended in upstream's list order, at the end of each table.
  assert.ok(text?.startsWith('*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n*filter\n'), 'the mangle canary first');
  assert.ok(text?.includes([
    ':KUBE-PROXY-CANARY - [0:0]',
    '-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    '-I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    '-I INPUT 1 -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
    '-I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    '-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    'COMMIT\n*nat\n',
  ].join('\n')), 'filter: the canary and its jumps just before COMMIT');
  assert.ok(text?.endsWith([
    ':KUBE-PROXY-CANARY - [0:0]',
    '-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    'COMMIT', '',
  ].join('\n')), 'nat: the same');
  assert.ok(!fake.calls.some((c) => c.cmd === 'iptables' && (c.args.includes('-I') || c.args.includes('-N'))), 'no separate command per jump or canary');
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_iptables_total\{table="nat"\} \d+/);
  for (const table of ['filter', 'nat']) {
    assert.ok(rulesIn(text ?? '', table) > 0);
    assert.match(await metrics.text(), new RegExp(`kubeproxy_sync_proxy_rules_iptables_last\\{table="${table}"\\} ${rulesIn(text ?? '', table)}\n`));
  }
});

test('a later change is a partial sync: only the changed service\'s chains are written', async () => {
  const { fake, backend, builder, metrics } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'db', { clusterIP: '198.18.100.2' }) });
  const s1 = slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]);
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: s1 });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'd', 'db', [ep('198.18.10.4')]) });
  await backend.sync(builder.next());
  const fullNat = rulesIn(restores(fake.calls)[0] ?? '', 'nat');
  fake.calls.length = 0;
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: s1, object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  await backend.sync(builder.next());
  const [text] = restores(fake.calls);
  assert.ok(text);
  assert.match(text, /ns1\/web:http -> 198\.18\.10\.2:8080/);
  assert.doesNotMatch(text, /-A KUBE-SEP-\S+ .*198\.18\.10\.4/, 'the unchanged service\'s endpoint chains are not rewritten');
  assert.match(text, /^-X KUBE-SEP-/m, 'the removed endpoint\'s chain is deleted');
  assert.ok(!fake.calls.some((c) => c.args.includes('-I')), 'no jump insertion on a partial sync');
  const written = rulesIn(text, 'nat');
  assert.ok(written > 0 && written < fullNat, `partial ${written} rules, full ${fullNat}`);
  assert.match(await metrics.text(), new RegExp(`kubeproxy_sync_proxy_rules_iptables_last\\{table="nat"\\} ${written}\n`));
});

test('a failed restore is counted, thrown, and the next sync is full', async () => {
  const { fake, backend, builder, metrics } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await backend.sync(builder.next());
  let fail = true;
  fake.respond((c) => c.cmd === 'iptables-restore' && fail, { code: 1, stderr: 'iptables-restore: line 4 failed\n' });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  await assert.rejects(backend.sync(builder.next()), /line 4 failed[\s\S]*> 4: /);
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1/);
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total 1/);
  fail = false;
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.ok(fake.calls.some((c) => c.cmd === 'iptables-save'), 'full sync dumps the tables again (canaries, jumps, stale chains)');
  assert.match(restores(fake.calls)[0] ?? '', /^:KUBE-SERVICES - \[0:0\]$/m);
});

test('an external flush (a jump gone) turns a periodic sync into a full one', async () => {
  const { fake, backend, builder, log } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await backend.sync(builder.next());
  fake.respond((c) => c.cmd === 'iptables' && c.args.includes('-C') && c.args.includes('PREROUTING'), { code: 1 });
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.ok(log.lines.some((l) => l.includes('flushed or deleted by someone else')));
  assert.ok(restores(fake.calls).some((t) => t.includes('-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES')), 'the jump is reinstalled');
});

test('a periodic sync with nothing changed writes nothing, and once an hour is a full one (upstream\'s FullSyncPeriod)', async () => {
  const { fake, backend, builder, clock } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await backend.sync(builder.next());
  fake.calls.length = 0;
  await clock.advance(FULL_SYNC_PERIOD_MS - 1);
  await backend.sync(builder.next());
  assert.ok(fake.calls.some((c) => c.cmd === 'iptables' && c.args.includes('-C')), 'the jumps are checked');
  assert.deepEqual(restores(fake.calls), [], 'all in place: no restore');
  assert.ok(!fake.calls.some((c) => c.cmd === 'iptables-save'));
  fake.calls.length = 0;
  await clock.advance(1);
  await backend.sync(builder.next());
  assert.ok(fake.calls.some((c) => c.cmd === 'iptables-save'), 'a full sync dumps the tables');
  assert.match(restores(fake.calls)[0] ?? '', /^:KUBE-SERVICES - \[0:0\]$/m, 'and rewrites everything');
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.deepEqual(restores(fake.calls), [], 'the hour starts again');
});

test('UDP endpoints that go away get their conntrack entries deleted; TCP ones do not', async () => {
  const { fake, backend, builder } = setup();
  const dns = svc('ns1', 'dns', { clusterIP: '198.18.100.11', type: 'NodePort', ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 30053 }] });
  builder.handle({ kind: 'Service', type: 'add', object: dns });
  const s1 = slice('ns1', 'd', 'dns', [ep('198.18.10.2'), ep('198.18.10.3')], { portName: 'dns', protocol: 'UDP', port: 5353 });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: s1 });
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  const w1 = slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]);
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: w1 });
  await backend.sync(builder.next());
  fake.calls.length = 0;
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: s1, object: slice('ns1', 'd', 'dns', [ep('198.18.10.2')], { portName: 'dns', protocol: 'UDP', port: 5353 }) });
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: w1, object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  await backend.sync(builder.next());
  const ct = fake.calls.filter((c) => c.cmd === 'conntrack').map((c) => c.args.join(' '));
  assert.deepEqual(ct, [
    '-D -p udp --orig-dst 198.18.100.11 --dst-nat 198.18.10.3',
    '-D -p udp --orig-port-dst 30053 --dst-nat 198.18.10.3',
  ]);
});

test('a UDP service that gets its first endpoint has its cached flows cleared', async () => {
  const { fake, backend, builder } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'dns', { clusterIP: '198.18.100.11', ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 0 }] }) });
  await backend.sync(builder.next());
  assert.equal(fake.calls.filter((c) => c.cmd === 'conntrack').length, 0, 'no endpoints yet: nothing to clear');
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'd', 'dns', [ep('198.18.10.2')], { portName: 'dns', protocol: 'UDP', port: 5353 }) });
  await backend.sync(builder.next());
  assert.deepEqual(fake.calls.filter((c) => c.cmd === 'conntrack').map((c) => c.args.join(' ')), ['-D -p udp --orig-dst 198.18.100.11']);
});

/** Applies restore inputs in order, as `iptables-restore --noflush` would, and lists chain → rules. */
function kernelAfter(texts: readonly string[]): string[] {
  let rs = emptyRuleset();
  for (const t of texts) rs = parseIptablesSave(t, rs);
  const out: string[] = [];
  for (const [name, t] of rs.tables) for (const c of t.chains.values()) out.push(`${name} ${c.name}: ${c.rules.map((r) => r.args.join(' ')).join(' | ')}`);
  return out.sort();
}

const stagingWorld = (builder: SnapshotBuilder, n: number, first = 0): void => {
  for (let i = first; i < first + n; i++) {
    builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', `s${i}`, { clusterIP: `198.18.100.${i + 1}` }) });
    builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', `s${i}`, `s${i}`, [ep(`198.18.10.${i + 2}`), ep(`198.18.11.${i + 2}`)]) });
  }
};

test('nf_tables backend: a sync that writes many chains stages them in restores of whole ports, then the main restore leaves them out', async () => {
  const { fake, backend, builder } = setup(7);
  let asked = 0;
  fake.respond((c) => c.cmd === 'iptables' && c.args[0] === '--version' && ++asked > 0, { stdout: 'iptables v1.8.9 (nf_tables)\n' });
  stagingWorld(builder, 5);
  await backend.sync(builder.next());
  const texts = restores(fake.calls);
  const main = texts.at(-1) ?? '';
  const stages = texts.slice(0, -1);
  // Each port here has 3 chains (KUBE-SVC- and two KUBE-SEP-): at most 7 a stage is two ports.
  assert.equal(stages.length, 3, 'five ports, two to a stage');
  for (const [i, st] of stages.entries()) {
    const declared = [...st.matchAll(/^:(KUBE-(?:SVC|SEP)-\S+)/gm)].map((m) => m[1]);
    assert.ok(declared.length <= 7 && declared.length % 3 === 0, `stage ${i + 1}: whole ports (${declared.length} chains)`);
    assert.equal(/^:KUBE-MARK-MASQ /m.test(st), i === 0, 'the first stage declares the one fixed chain ports jump to');
    assert.ok(st.startsWith('*nat\n') && st.endsWith('COMMIT\n'));
  }
  assert.deepEqual(fake.calls.filter((c) => c.cmd === 'iptables-restore').map((c) => c.args.includes('--counters')), [false, false, false, true]);
  assert.doesNotMatch(main, /^:KUBE-(SVC|SEP)-/m, 'the main restore writes no staged chain');
  assert.match(main, /^-A KUBE-SERVICES .* -j KUBE-SVC-/m, 'and makes KUBE-SERVICES jump to them');
  // Stages then main leave what one full restore of the same model leaves.
  const one = setup();
  stagingWorld(one.builder, 5);
  await one.backend.sync(one.builder.next());
  assert.equal(restores(one.fake.calls).length, 1, 'the legacy backend (no nf_tables in --version): one restore');
  assert.deepEqual(kernelAfter(texts), kernelAfter(restores(one.fake.calls)));

  // A partial sync adding three ports (9 chains) stages them too; one adding one port does not.
  fake.calls.length = 0;
  stagingWorld(builder, 3, 5);
  await backend.sync(builder.next());
  assert.equal(restores(fake.calls).length, 3, 'two stages and the main restore');
  fake.calls.length = 0;
  stagingWorld(builder, 1, 8);
  await backend.sync(builder.next());
  assert.equal(restores(fake.calls).length, 1);
  assert.equal(asked, 1, 'the backend is asked once');
});

test('nf_tables backend: a failed stage is thrown before the main restore runs, and the next sync is full', async () => {
  const { fake, backend, builder, metrics } = setup(7);
  fake.respond((c) => c.cmd === 'iptables' && c.args[0] === '--version', { stdout: 'iptables v1.8.9 (nf_tables)\n' });
  let n = 0;
  fake.respond((c) => c.cmd === 'iptables-restore' && ++n === 2, { code: 1, stderr: 'iptables-restore: line 3 failed\n' });
  stagingWorld(builder, 5);
  await assert.rejects(backend.sync(builder.next()), /line 3 failed/);
  assert.equal(restores(fake.calls).length, 2, 'no restore after the failed stage');
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1/);
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.ok(fake.calls.some((c) => c.cmd === 'iptables-save'), 'a full sync follows');
  assert.equal(restores(fake.calls).length, 4, 'staged again: three stages and the main restore');
});

test('freshNodeExtra is what a full sync adds on a node without any of kproxy\'s rules (what the bench loads alone)', async () => {
  const { fake, backend, builder } = setup();
  fake.respond((c) => c.cmd === 'iptables' && c.args.includes('-S'), { code: 1 });
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  const snap = builder.next();
  await backend.sync(snap);
  const model = renderIptables(snap, { nodeName: 'n1', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: false, family: 'IPv4' });
  assert.equal(restores(fake.calls)[0], serializeFull(model, { extra: freshNodeExtra(model) }).text);
});

test('a change that leaves every rule as it was runs no restore at all', async () => {
  const { fake, backend, builder, metrics } = setup();
  const before = slice('ns1', 'w', 'web', [ep('198.18.10.2')]);
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: before });
  await backend.sync(builder.next());
  fake.calls.length = 0;
  // The endpoint moves to another node: a Cluster-policy service's rules do not depend on it.
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: before, object: slice('ns1', 'w', 'web', [ep('198.18.10.2', { nodeName: 'elsewhere' })]) });
  const snap = builder.next();
  assert.equal(snap.changed.size, 1, 'the snapshot saw a change');
  await backend.sync(snap);
  assert.equal(restores(fake.calls).length, 0);
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_iptables_last\{table="nat"\} 0\n/);
});

test('nf_tables backend: a full sync stages only the ports whose chains the kernel lacks, or that a failed sync staged', async () => {
  const { fake, backend, builder } = setup(7);
  fake.respond((c) => c.cmd === 'iptables' && c.args[0] === '--version', { stdout: 'iptables v1.8.9 (nf_tables)\n' });
  let failMain = false;
  fake.respond((c) => c.cmd === 'iptables-restore' && c.args.includes('--counters') && failMain, { code: 1, stderr: 'iptables-restore: line 2 failed\n' });
  stagingWorld(builder, 5);
  await backend.sync(builder.next());
  // Three new ports, staged by a partial sync whose main restore then fails.
  stagingWorld(builder, 3, 5);
  failMain = true;
  await assert.rejects(backend.sync(builder.next()), /line 2 failed/);
  failMain = false;
  const declared = new Set(restores(fake.calls).flatMap((t) => [...t.matchAll(/^:(KUBE-(?:SVC|SEP)-\S+)/gm)].map((m) => m[1])));
  // What the kernel holds now, as its dump tells: every chain any restore so far declared.
  fake.respond((c) => c.cmd === 'iptables-save' && c.args.includes('nat'), { stdout: `*nat\n${[...declared].map((c) => `:${c} - [0:0]`).join('\n')}\nCOMMIT\n` });
  fake.calls.length = 0;
  await backend.sync(builder.next());
  const texts = restores(fake.calls);
  const stages = texts.slice(0, -1);
  const main = texts.at(-1) ?? '';
  assert.equal(stages.length, 2, 'the three ports the failed sync staged, again (3 chains each, 7 a stage)');
  assert.equal(stages.join('').match(/^:KUBE-SVC-/gm)?.length, 3);
  assert.equal(main.match(/^:KUBE-SVC-/gm)?.length, 5, 'the five ports the kernel\'s rules reach are rewritten in the main restore only');
});
