/**
 * Every nftables golden, checked by the real `nft` (`nft -c -f -`: parse and kernel check,
 * nothing applied) inside a throwaway network namespace that the test creates and always
 * destroys. Partial goldens are checked on top of their `.base.nft` full sync, which is
 * applied first inside that namespace. Never runs nft in the root namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createNetns, kernelTestGate, type Netns } from '../../../src/platform/netns.js';
import { serializeCleanup, serializeDeleteStale } from '../../../src/backends/nftables/serialize.js';
import { NftablesBackend } from '../../../src/backends/nftables/backend.js';
import { SnapshotBuilder } from '../../../src/core/snapshot.js';
import { memoryLogger } from '../../../src/observability/log.js';
import { ProxyMetrics } from '../../../src/observability/metrics.js';
import { FakeClock } from '../../../src/platform/clock.js';
import { Conntrack } from '../../../src/platform/conntrack.js';
import type { Exec } from '../../../src/platform/exec.js';
import { ep, slice, svc } from '../../helpers/objects.js';

const DIR = fileURLToPath(new URL('../../../../test/golden/nftables/', import.meta.url));
const TOOLS = ['nft'] as const;

function goldens(): string[] {
  return readdirSync(DIR).filter((f) => f.endsWith('.nft') && !f.endsWith('.base.nft')).sort();
}

async function withNetns(fn: (ns: Netns) => Promise<void>): Promise<void> {
  const ns = await createNetns('kp-nftgold');
  try {
    await fn(ns);
  } finally {
    await ns.destroy();
  }
}

async function nft(ns: Netns, input: string, check: boolean, what: string): Promise<void> {
  const r = await ns.exec('nft', check ? ['-c', '-f', '-'] : ['-f', '-'], { input });
  assert.equal(r.code, 0, `nft ${check ? '-c ' : ''}rejected ${what}:\n${r.stderr}`);
}

test('there are nftables goldens to check', () => {
  assert.ok(goldens().length >= 10, `expected goldens in ${DIR}`);
});

for (const file of goldens()) {
  test(`nft -c accepts golden ${file}`, async (t) => {
    if (!(await kernelTestGate(t, { tools: TOOLS }))) return;
    await withNetns(async (ns) => {
      const text = readFileSync(DIR + file, 'utf8');
      if (file.startsWith('partial-')) {
        const base = file.replace(/\.nft$/, '.base.nft');
        await nft(ns, readFileSync(DIR + base, 'utf8'), false, base);
        await nft(ns, text, true, file);
        // Apply it for real, then delete what it left stale (the later transaction): the chains it
        // flushed and wrote no rules into, and the affinity sets no rule names any more.
        await nft(ns, text, false, file);
        const staleChains = [...text.matchAll(/^flush chain ip6? kube-proxy (\S*\/\S*)$/gm)]
          .map((m) => m[1] ?? '')
          .filter((c) => !text.includes(`kube-proxy ${c} {\n`));
        const listing = (await ns.exec('nft', ['list', 'ruleset'])).stdout;
        const staleSets = [...listing.matchAll(/^\tset (affinity-\S+) \{$/gm)]
          .map((m) => m[1] ?? '')
          .filter((s) => !new RegExp(`@${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s`).test(listing));
        const del = serializeDeleteStale(text.includes(' ip6 kube-proxy') ? 'ip6' : 'ip', [...staleChains, ...staleSets]);
        if (del !== '') await nft(ns, del, false, `${file} stale chain deletion`);
      } else {
        await nft(ns, text, true, file);
      }
    });
  });
}

test('a full golden applies, re-applies (idempotent) and cleans up', async (t) => {
  if (!(await kernelTestGate(t, { tools: TOOLS }))) return;
  await withNetns(async (ns) => {
    const text = readFileSync(DIR + 'overall.nft', 'utf8');
    await nft(ns, text, false, 'overall.nft');
    await nft(ns, text, false, 'overall.nft again');
    const listed = await ns.execOk('nft', ['list', 'table', 'ip', 'kube-proxy']);
    assert.match(listed.stdout, /service-ULMVA6XW-ns1\/svc1\/tcp\/p80/);
    await nft(ns, serializeCleanup('ip'), false, 'cleanup');
    await nft(ns, serializeCleanup('ip'), false, 'cleanup again');
    const after = await ns.exec('nft', ['list', 'table', 'ip', 'kube-proxy']);
    assert.notEqual(after.code, 0);
  });
});

test('a partial sync does not recreate a table someone deleted: it fails, and the full sync that follows restores every service', async (t) => {
  if (!(await kernelTestGate(t, { tools: ['nft', 'conntrack'] }))) return;
  await withNetns(async (ns) => {
    // The partial golden alone, against no table: nft refuses it and creates nothing.
    const partialText = readFileSync(DIR + 'partial-endpoint-change.nft', 'utf8');
    assert.notEqual((await ns.exec('nft', ['-f', '-'], { input: partialText })).code, 0, 'a partial transaction needs the table');
    assert.notEqual((await ns.exec('nft', ['list', 'table', 'ip', 'kube-proxy'])).code, 0, 'and made none');

    const exec: Exec = (cmd, args, options) => ns.exec(cmd, args, { ...options, timeoutMs: 60_000 });
    const metrics = new ProxyMetrics();
    const backend = new NftablesBackend({
      exec, conntrack: new Conntrack(exec), clock: new FakeClock(), log: memoryLogger(), metrics,
      render: { nodeName: 'n1', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4' },
    });
    const b = new SnapshotBuilder('n1');
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'db', { clusterIP: '198.18.100.2' }) });
    const w = slice('ns1', 'w', 'web', [ep('198.18.10.2')]);
    b.handle({ kind: 'EndpointSlice', type: 'add', object: w });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'd', 'db', [ep('198.18.10.4')]) });
    await backend.sync(b.next());
    await nft(ns, 'delete table ip kube-proxy\n', false, 'someone deletes the table');
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: w, object: slice('ns1', 'w', 'web', [ep('198.18.10.3')]) });
    await backend.sync(b.next());
    assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1/, 'the partial transaction failed');
    const table = (await ns.execOk('nft', ['list', 'table', 'ip', 'kube-proxy'])).stdout;
    assert.match(table, /dnat to 198\.18\.10\.3:8080/, 'the change is in');
    assert.match(table, /dnat to 198\.18\.10\.4:8080/, 'and the untouched service is back');
    assert.match(table, /198\.18\.100\.2 \. tcp \. 80 : goto service-/, 'with its map element');
    assert.match(table, /comment "rules for kube-proxy"/);
  });
});

test('a restarted backend with fewer services finds the old chains and sets by name and deletes them', async (t) => {
  if (!(await kernelTestGate(t, { tools: ['nft', 'conntrack'] }))) return;
  await withNetns(async (ns) => {
    const exec: Exec = (cmd, args, options) => ns.exec(cmd, args, { ...options, timeoutMs: 60_000 });
    // Another table with same-named chains and sets must be left alone.
    await nft(ns, 'add table ip other\nadd chain ip other services\nadd set ip other cluster-ips { type ipv4_addr ; }\n', false, 'the other table');
    const clock = new FakeClock();
    const backend = (): NftablesBackend => new NftablesBackend({
      exec, conntrack: new Conntrack(exec), clock, log: memoryLogger(), metrics: new ProxyMetrics(),
      render: { nodeName: 'n1', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4' },
    });
    const both = new SnapshotBuilder('n1');
    both.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
    both.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'sticky', { clusterIP: '198.18.100.2', sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 }) });
    both.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
    both.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 's', 'sticky', [ep('198.18.10.3')]) });
    await backend().sync(both.next());
    const before = (await ns.execOk('nft', ['list', 'table', 'ip', 'kube-proxy'])).stdout;
    assert.match(before, /chain service-\S+-ns1\/sticky\/tcp\/http \{/);
    assert.match(before, /set affinity-\S+-ns1\/sticky\/tcp\/http__198\.18\.10\.3\/8080 \{/);

    const webOnly = new SnapshotBuilder('n1');
    webOnly.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
    webOnly.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
    const restarted = backend();
    await restarted.sync(webOnly.next());
    const flushed = (await ns.execOk('nft', ['list', 'table', 'ip', 'kube-proxy'])).stdout;
    assert.doesNotMatch(flushed, /set affinity-\S+-ns1\/sticky/, 'the removed service\'s affinity set is deleted');
    assert.match(flushed, /chain service-\S+-ns1\/sticky\/tcp\/http \{\n\t\}/, 'its chains are flushed now and deleted a second later (as upstream)');
    await clock.advance(1100);
    await restarted.sync(webOnly.next());
    const after = (await ns.execOk('nft', ['list', 'table', 'ip', 'kube-proxy'])).stdout;
    assert.doesNotMatch(after, /ns1\/sticky/, 'no chain or set of the removed service is left');
    assert.match(after, /chain service-\S+-ns1\/web\/tcp\/http \{/, 'the remaining service is there');
    const other = (await ns.execOk('nft', ['list', 'table', 'ip', 'other'])).stdout;
    assert.match(other, /chain services/);
    assert.match(other, /set cluster-ips/);
  });
});
