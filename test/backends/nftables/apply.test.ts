/** nftables mode's apply step against a fake exec: one transaction per sync, delayed stale deletes, failures. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NftablesBackend, tableNames } from '../../../src/backends/nftables/backend.js';
import { SnapshotBuilder } from '../../../src/core/snapshot.js';
import { memoryLogger } from '../../../src/observability/log.js';
import { ProxyMetrics } from '../../../src/observability/metrics.js';
import { FakeClock } from '../../../src/platform/clock.js';
import { Conntrack } from '../../../src/platform/conntrack.js';
import { FakeExec, type ExecCall } from '../../../src/platform/exec.js';
import { ep, slice, svc } from '../../helpers/objects.js';

/** listTakesMs: how long (on the fake clock) the periodic check's `nft list chain` takes. */
function setup(listTakesMs = 0, stageLines?: number) {
  const fake = new FakeExec();
  // The table exists and is intact after the first sync.
  const table = { flushed: false };
  fake.respond((c) => c.cmd === 'nft' && c.args.join(' ') === '-t list chain ip kube-proxy nat-prerouting' && !table.flushed, { stdout: 'table ip kube-proxy {\n chain nat-prerouting {\n  jump services\n }\n}\n' });
  fake.respond((c) => c.cmd === 'nft' && c.args.join(' ') === '-t list chain ip kube-proxy nat-prerouting' && table.flushed, { stdout: 'table ip kube-proxy {\n chain nat-prerouting {\n }\n}\n' });
  const metrics = new ProxyMetrics();
  const log = memoryLogger();
  const clock = new FakeClock();
  const exec: typeof fake.exec = async (cmd, args, options) => {
    const result = fake.exec(cmd, args, options);
    if (args.includes('chain') && listTakesMs > 0) await clock.advance(listTakesMs);
    return result;
  };
  const backend = new NftablesBackend({
    exec, conntrack: new Conntrack(fake.exec), clock, log, metrics,
    render: { nodeName: 'n1', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4' },
    ...(stageLines === undefined ? {} : { stageLines }),
  });
  return { fake, metrics, log, clock, backend, table, builder: new SnapshotBuilder('n1') };
}

const txs = (calls: readonly ExecCall[]): string[] => calls.filter((c) => c.cmd === 'nft' && c.args[0] === '-f').map((c) => c.input ?? '');

test('each sync is exactly one nft transaction; a partial one only touches the changed service', async () => {
  const { fake, backend, builder } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'db', { clusterIP: '198.18.100.2' }) });
  const w = slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]);
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: w });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'd', 'db', [ep('198.18.10.4')]) });
  await backend.sync(builder.next());
  assert.equal(txs(fake.calls).length, 1);
  assert.match(txs(fake.calls)[0] ?? '', /^add table ip kube-proxy/);
  fake.calls.length = 0;
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: w, object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  await backend.sync(builder.next());
  const [tx, ...more] = txs(fake.calls);
  assert.equal(more.length, 0);
  assert.ok(tx);
  assert.doesNotMatch(tx, /198\.18\.10\.4/, 'the unchanged service is not rewritten');
  assert.match(tx, /flush chain ip kube-proxy endpoint-\S+-ns1\/web\/tcp\/http__198\.18\.10\.3\/8080/, 'the stale endpoint chain is flushed now');
  assert.doesNotMatch(tx, /delete chain/, 'and not deleted in the same transaction');
});

test('stale chains are deleted by a later sync, at least a second after they were flushed', async () => {
  const { fake, backend, builder, clock } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  const w = slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]);
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: w });
  await backend.sync(builder.next());
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: w, object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  await backend.sync(builder.next());
  fake.calls.length = 0;
  await clock.advance(500);
  await backend.sync(builder.next());
  assert.doesNotMatch(txs(fake.calls).join(''), /delete chain/, 'too early');
  await clock.advance(600);
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.match(txs(fake.calls).join(''), /delete chain ip kube-proxy endpoint-\S+__198\.18\.10\.3\/8080/);
  fake.calls.length = 0;
  await clock.advance(2000);
  await backend.sync(builder.next());
  assert.doesNotMatch(txs(fake.calls).join(''), /delete chain/, 'deleted once');
});

/**
 * A ClientIP-affinity service with endpoints .2 and .3, synced; then .3 removed (the calls of that
 * partial sync only are left in `fake.calls`). Returns the slice now installed.
 */
async function affinityEndpointRemoved({ fake, backend, builder }: ReturnType<typeof setup>): Promise<ReturnType<typeof slice>> {
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web', { sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 300 }) });
  const w1 = slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]);
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: w1 });
  await backend.sync(builder.next());
  fake.calls.length = 0;
  const w2 = slice('ns1', 'w', 'web', [ep('198.18.10.2')]);
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: w1, object: w2 });
  await backend.sync(builder.next());
  return w2;
}

test('an endpoint change deletes nothing itself; stale chains and affinity sets go at most once per cleanup period', async () => {
  const s = setup();
  const { fake, backend, builder, clock } = s;
  const w2 = await affinityEndpointRemoved(s);
  assert.doesNotMatch(txs(fake.calls).join(''), /^delete /m, 'the change\'s transaction deletes nothing (a delete makes nft load its whole cache)');
  assert.match(txs(fake.calls).join(''), /^add set ip kube-proxy affinity-\S+__198\.18\.10\.2\/8080 \{/m, 'and declares the affinity set its rules name');
  /** The transactions of a sync (nothing changed) `ms` later. */
  const syncAfter = async (ms: number): Promise<string> => {
    await clock.advance(ms);
    fake.calls.length = 0;
    await backend.sync(builder.next());
    return txs(fake.calls).join('');
  };
  const first = await syncAfter(1100);
  assert.match(first, /^delete chain ip kube-proxy endpoint-\S+__198\.18\.10\.3\/8080$/m);
  assert.match(first, /^delete set ip kube-proxy affinity-\S+__198\.18\.10\.3\/8080$/m);

  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: w2, object: slice('ns1', 'w', 'web', [ep('198.18.10.4')]) });
  await backend.sync(builder.next());
  assert.doesNotMatch(await syncAfter(1100), /^delete /m, 'the last cleanup was less than a period ago');
  const second = await syncAfter(30_000);
  assert.match(second, /^delete chain ip kube-proxy endpoint-\S+__198\.18\.10\.2\/8080$/m);
  assert.match(second, /^delete set ip kube-proxy affinity-\S+__198\.18\.10\.2\/8080$/m);
  assert.doesNotMatch(second, /198\.18\.10\.3/, 'deleted once');
});

test('after a full sync, only the stale chains it listed are left to delete (a set or chain gone meanwhile would fail every cleanup)', async () => {
  const s = setup();
  const { fake, backend, builder, clock } = s;
  await affinityEndpointRemoved(s);
  // A full sync whose listing shows no stale chain or set (someone removed them meanwhile).
  await backend.sync(builder.next(true));
  await clock.advance(60_000);
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.doesNotMatch(txs(fake.calls).join(''), /^delete /m);
});

test('a failed transaction is counted and thrown, and the next sync is full; a missing nft says what to install', async () => {
  const { fake, backend, builder, metrics } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await backend.sync(builder.next());
  let fail = true;
  fake.respond((c) => c.cmd === 'nft' && c.args[0] === '-f' && fail, { code: 1, stderr: '/dev/stdin:3:1-20: Error: Could not process rule: No such file or directory\n' });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  fake.calls.length = 0;
  await assert.rejects(backend.sync(builder.next()), (err: Error) => {
    // The failing line of the full transaction (the last one tried), made again for the message.
    const line3 = fake.calls.filter((c) => c.cmd === 'nft' && c.args[0] === '-f').at(-1)?.input?.split('\n')[2] ?? '';
    assert.ok(line3.length > 0);
    assert.match(err.message, /nft -f failed \(exit 1\)/);
    assert.ok(err.message.endsWith(`\n> 3: ${line3}`), err.message);
    return true;
  });
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1/);
  fail = false;
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.ok(fake.calls.some((c) => c.cmd === 'nft' && c.args.join(' ') === 'list chains ip'), 'a full sync reads what exists');

  const missing = setup();
  missing.fake.respond((c) => c.cmd === 'nft', { code: 127 });
  missing.builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await assert.rejects(missing.backend.sync(missing.builder.next()), /needs the nft tool \(Debian package nftables\)/);
});

test('a partial sync lists nothing first, and rewrites the fixed chains (repairing an outside flush of them)', async () => {
  const { fake, backend, builder, table } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  const w = slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]);
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: w });
  await backend.sync(builder.next());
  fake.calls.length = 0;
  builder.handle({ kind: 'EndpointSlice', type: 'update', previous: w, object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  await backend.sync(builder.next());
  assert.deepEqual(fake.calls.filter((c) => c.cmd === 'nft').map((c) => c.args.join(' ')), ['-f -'], 'one transaction, no listing');
  const [tx] = txs(fake.calls);
  assert.match(tx ?? '', /^flush chain ip kube-proxy nat-postrouting$/m);
  assert.match(tx ?? '', /^add chain ip kube-proxy nat-postrouting \{\n\tjump masquerading\n\}$/m);
  assert.doesNotMatch(tx ?? '', /nat-prerouting/, 'the chain the periodic check looks at is left alone');

  // A periodic sync (nothing changed) starts a check of the table in the background; the sync
  // after it found the table flushed is a full one.
  fake.calls.length = 0;
  table.flushed = true;
  await backend.sync(builder.next());
  assert.ok(fake.calls.some((c) => c.cmd === 'nft' && c.args.join(' ') === '-t list chain ip kube-proxy nat-prerouting'));
  assert.doesNotMatch(txs(fake.calls).join(''), /flush map ip kube-proxy service-ips/, 'the sync did not wait for the check');
  await backend.pendingCheck;
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.match(txs(fake.calls)[0] ?? '', /flush map ip kube-proxy service-ips/, 'the next sync is a full sync');
  fake.calls.length = 0;
  table.flushed = false;
  await backend.pendingCheck;
  await backend.sync(builder.next());
  assert.doesNotMatch(txs(fake.calls).join(''), /flush map ip kube-proxy service-ips/, 'once repaired, partial again');
});

test('a failed partial transaction is followed at once by a full sync in the same call', async () => {
  const { fake, backend, builder, metrics } = setup();
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await backend.sync(builder.next());
  let fail = true;
  fake.respond((c) => c.cmd === 'nft' && c.args[0] === '-f' && fail && !(c.input ?? '').includes('\nflush map '), { code: 1, stderr: '/dev/stdin:2:1-20: Error: No such file or directory\n' });
  builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
  fake.calls.length = 0;
  await backend.sync(builder.next());
  fail = false;
  const sent = txs(fake.calls);
  assert.equal(sent.length, 2, 'the partial, then the full');
  assert.doesNotMatch(sent[0] ?? '', /flush map/, 'first the partial');
  assert.match(sent[1] ?? '', /flush map ip kube-proxy service-ips/, 'then a full sync');
  assert.ok(fake.calls.some((c) => c.cmd === 'nft' && c.args.join(' ') === 'list chains ip'), 'the full sync reads what exists');
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1/);
});

test('the periodic flush check runs in the background, and waits ten times its own duration before the next', async () => {
  const { fake, backend, builder, table, clock } = setup(500);
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await backend.sync(builder.next());
  const checks = (): number => fake.calls.filter((c) => c.args.join(' ') === '-t list chain ip kube-proxy nat-prerouting').length;
  await backend.sync(builder.next()); // periodic: starts a check (500 ms), so none again for 5 s
  assert.equal(checks(), 1);
  assert.ok(backend.pendingCheck, 'the check is still running after the sync returned');
  await backend.sync(builder.next());
  assert.equal(checks(), 1, 'one check at a time');
  await backend.pendingCheck;
  table.flushed = true;
  await clock.advance(4000);
  fake.calls.length = 0;
  await backend.sync(builder.next());
  await backend.pendingCheck;
  assert.equal(checks(), 0, 'within the backoff: no check');
  await backend.sync(builder.next());
  assert.doesNotMatch(txs(fake.calls).join(''), /flush map ip kube-proxy service-ips/, 'and no full sync');
  await clock.advance(1500);
  fake.calls.length = 0;
  await backend.sync(builder.next());
  await backend.pendingCheck;
  assert.equal(checks(), 1, 'after it: checked');
  fake.calls.length = 0;
  await backend.sync(builder.next());
  assert.match(txs(fake.calls)[0] ?? '', /flush map ip kube-proxy service-ips/, 'the flush found, a full sync');
});

test('existing chains and sets are read by name from our table only', () => {
  const listing = [
    'table ip other {', '\tchain c1 {', '\t\ttype filter hook input priority 0; policy accept;', '\t}', '\tset s9 {', '\t}', '}',
    'table ip kube-proxy {', '\tchain services {', '\t}', '\tchain endpoint-X-ns/web/tcp/http__198.18.10.2/8080 {', '\t}',
    '\tset cluster-ips {', '\t\ttype ipv4_addr', '\t}', '\tmap service-ips {', '\t}', '}',
    'table ip6 kube-proxy {', '\tchain services6 {', '\t}', '}',
  ].join('\n');
  const namesInTable = (family: string, kind: RegExp): string[] => {
    const out: string[] = [];
    const scan = tableNames(family, 'kube-proxy', kind, (n) => out.push(n));
    for (const line of listing.split('\n')) scan(line);
    return out;
  };
  assert.deepEqual(namesInTable('ip', /^chain$/), ['services', 'endpoint-X-ns/web/tcp/http__198.18.10.2/8080']);
  assert.deepEqual(namesInTable('ip', /^(set|map)$/), ['cluster-ips', 'service-ips']);
  assert.deepEqual(namesInTable('ip6', /^chain$/), ['services6']);
});

/** Three services with endpoints (one with affinity): a few dozen lines of per-port chains. */
function threeServices(builder: SnapshotBuilder): void {
  for (const [i, name] of ['a', 'b', 'c'].entries()) {
    builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', name, { clusterIP: `198.18.100.${i + 2}`, ...(name === 'b' ? { sessionAffinity: 'ClientIP' as const, sessionAffinityTimeoutSeconds: 60 } : {}) }) });
    builder.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', name, name, [ep(`198.18.10.${i + 2}`), ep(`198.18.11.${i + 2}`)]) });
  }
}

/** `nft list chains ip` as the kernel prints it, for these chains of our table. */
const chainListing = (chains: readonly string[]): string => `table ip kube-proxy {\n${chains.map((c) => `\tchain ${c} {\n\t}\n`).join('')}}\n`;
/** The chains a transaction writes rules into (`add chain … {` blocks). */
const written = (tx: string): string[] => [...tx.matchAll(/^add chain ip kube-proxy (\S+) \{$/gm)].map((m) => m[1] ?? '');

test('a full sync of many new service ports stages their chains ahead; a failed main transaction leaves them to be staged again', async () => {
  const { fake, backend, builder, metrics } = setup(0, 10);
  threeServices(builder);
  let failMain = true;
  fake.respond((c) => c.cmd === 'nft' && c.args[0] === '-f' && failMain && (c.input ?? '').includes('\nflush map '), { code: 1, stderr: '/dev/stdin:2:1-20: Error: Could not process rule: Device or resource busy\n' });
  await assert.rejects(backend.sync(builder.next()), /nft -f failed/);
  const first = txs(fake.calls);
  assert.ok(first.length >= 3, `${first.length} transactions: stages, then the main one`);
  const stages = first.slice(0, -1);
  const staged = stages.flatMap(written);
  assert.ok(staged.some((c) => c.startsWith('service-')) && staged.some((c) => c.startsWith('endpoint-')));
  for (const t of stages) assert.doesNotMatch(t, /element|flush map|hook/, 'a stage touches nothing traffic sees');
  assert.match(first.at(-1) ?? '', /add element ip kube-proxy service-ips \{ 198\.18\.100\.2 \. tcp \. 80 : goto service-/);
  for (const c of staged) assert.ok(!written(first.at(-1) ?? '').includes(c), `the main transaction leaves ${c} to the stage`);
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1/);

  // The staged chains now exist in the kernel, unreferenced; the retry stages them again.
  fake.respond((c) => c.cmd === 'nft' && c.args.join(' ') === 'list chains ip', { stdout: chainListing([...new Set(staged)]) });
  failMain = false;
  fake.calls.length = 0;
  await backend.sync(builder.next());
  const retry = txs(fake.calls);
  assert.deepEqual(retry.slice(0, -1).flatMap(written).sort(), [...staged].sort(), 'the same chains are staged again');
  assert.match(retry.at(-1) ?? '', /flush map ip kube-proxy service-ips/);

  // A restarted kproxy cannot tell whether existing chains are referenced: it rewrites them in
  // the main transaction, as one full sync always did.
  const restarted = setup(0, 10);
  threeServices(restarted.builder);
  restarted.fake.respond((c) => c.cmd === 'nft' && c.args.join(' ') === 'list chains ip', { stdout: chainListing([...new Set(staged)]) });
  await restarted.backend.sync(restarted.builder.next());
  const once = txs(restarted.fake.calls);
  assert.equal(once.length, 1, 'no stages for chains that exist');
  for (const c of new Set(staged)) assert.ok(written(once[0] ?? '').includes(c), c);
});

test('a partial sync stages the new ports it adds; a failed stage stops it before its main transaction, and the full sync that follows completes', async () => {
  const { fake, backend, builder, metrics } = setup(0, 10);
  builder.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  await backend.sync(builder.next());
  assert.equal(txs(fake.calls).length, 1, 'one small service: no stages');
  threeServices(builder);
  let n = 0;
  fake.respond((c) => c.cmd === 'nft' && c.args[0] === '-f' && ++n === 2, { code: 1, stderr: 'Error: Could not process rule: No space left on device\n' });
  fake.calls.length = 0;
  await backend.sync(builder.next());
  const sent = txs(fake.calls);
  const fullAt = sent.findIndex((t) => /flush map /.test(t));
  assert.equal(fullAt, sent.length - 1, 'the full sync\'s main transaction is the last');
  assert.doesNotMatch(sent[0] ?? '', /element/, 'the partial sync began with a stage');
  assert.ok(sent.slice(0, fullAt).every((t) => !/element/.test(t)), 'after its failed stage, the partial sync ran no main transaction: only stages came before the full one');
  assert.ok(sent.slice(2, fullAt).length >= 2, 'the full sync staged the new ports again');
  assert.match(sent[fullAt] ?? '', /add element ip kube-proxy service-ips \{ 198\.18\.100\.3 \. tcp \. 80 : goto service-/);
  assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1/);
});

test('a full sync that cannot list the existing chains stages nothing: any of them might be in use', async () => {
  const { fake, backend, builder } = setup(0, 10);
  fake.respond((c) => c.cmd === 'nft' && c.args.join(' ') === 'list chains ip', { code: 1, stderr: 'Error: cache initialization failed: Operation not permitted\n' });
  threeServices(builder);
  await backend.sync(builder.next());
  const sent = txs(fake.calls);
  assert.equal(sent.length, 1, 'one transaction, as before staging');
  assert.match(sent[0] ?? '', /flush chain ip kube-proxy service-\S+-ns1\/a\/tcp\/http\n/);
});
