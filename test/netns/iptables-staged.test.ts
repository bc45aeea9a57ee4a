/**
 * On the nf_tables backend, iptables mode writes the chains of many new service ports in staging
 * restores of whole ports ahead of the main restore (serializeStages). Proven here with
 * `iptables-nft` and real packets in a namespace: the staged sync serves every service; when a
 * sync fails after its stages committed (in its main restore, or in a later stage), every
 * service keeps answering as after the last good sync and the new ones not at all; the retry
 * makes everything reachable, and leaves the same rules as one unstaged restore would.
 * The node namespace holds the pods' addresses on lo and routes the ClusterIPs to a veth
 * device (whose peer answers nothing), so connections from the node itself go through the nat
 * OUTPUT chain's jump to KUBE-SERVICES.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IptablesBackend } from '../../src/backends/iptables/backend.js';
import { SnapshotBuilder } from '../../src/core/snapshot.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { FakeClock } from '../../src/platform/clock.js';
import { Conntrack } from '../../src/platform/conntrack.js';
import { Iptables } from '../../src/platform/iptables.js';
import { kernelTestGate, type Netns } from '../../src/platform/netns.js';
import { nodeWithPods, podReached, StageFaults } from '../helpers/netns-util.js';
import { ep, slice, svc } from '../helpers/objects.js';

const PODS = { 'pod-a': '198.18.10.2', 'pod-b': '198.18.10.3', 'pod-c': '198.18.10.4' } as const;
const RENDER = { nodeName: 'n1', nodeIPs: ['198.18.0.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/16'], masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: false, family: 'IPv4' } as const;

/** The nat and filter rules kproxy owns, sorted (a staged sync declares chains in another order). */
async function kproxyRules(ns: Netns): Promise<string[]> {
  const out: string[] = [];
  for (const table of ['nat', 'filter']) {
    const dump = (await ns.execOk('iptables-nft-save', ['-t', table])).stdout;
    for (const l of dump.split('\n')) if (/^(-A|:)KUBE-/.test(l) || /^-A \S+ .*-j KUBE-/.test(l)) out.push(`${table} ${l.replace(/ \[\d+:\d+\]$/, '')}`);
  }
  return out.sort();
}

test('iptables-nft staged syncs: a failure after the stages leaves traffic as before, and the retry completes it', { timeout: 120_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['iptables-nft', 'iptables-nft-restore', 'iptables-nft-save', 'conntrack'] }))) return;
  let ns: Netns | undefined;
  try {
    ns = await nodeWithPods('ipt-staged', PODS, 110_000);
    const node = ns;
    // The main restore is the one with --counters; a rule jumping to a chain that does not exist breaks one.
    const faults = new StageFaults(node, {
      tool: (cmd) => cmd === 'iptables-nft-restore',
      isMain: (args) => args.includes('--counters'),
      broken: (input) => {
        const at = input.lastIndexOf('COMMIT');
        return `${input.slice(0, at)}-A KUBE-SERVICES -j NO-SUCH-CHAIN\n${input.slice(at)}`;
      },
    });
    const exec = faults.exec;
    const iptables = new Iptables({ exec, binary: 'iptables-nft' });
    assert.equal(await iptables.nfTables(), true, 'iptables-nft --version says nf_tables');
    const metrics = new ProxyMetrics();
    // Each service here has 2 chains (KUBE-SVC- and one KUBE-SEP-): at most 3 a stage is one service.
    const backend = new IptablesBackend({ iptables, conntrack: new Conntrack(exec), clock: new FakeClock(), log: memoryLogger(), metrics, stageChains: 3, render: RENDER });
    const b = new SnapshotBuilder('n1');
    const web = slice('ns1', 'web', 'web', [ep(PODS['pod-a'])]);
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: '198.18.100.10' }) });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: web });
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'other', { clusterIP: '198.18.100.11' }) });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'other', 'other', [ep(PODS['pod-b'])]) });
    await backend.sync(b.next());
    assert.equal(faults.stagesSeen, 2, 'the first sync staged its two services');
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a');
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');

    // New services and a changed one, in one sync whose main restore fails.
    for (const i of [12, 13, 14]) {
      b.handle({ kind: 'Service', type: 'add', object: svc('ns1', `new${i}`, { clusterIP: `198.18.100.${i}` }) });
      b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', `new${i}`, `new${i}`, [ep(PODS['pod-c'])]) });
    }
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: web, object: slice('ns1', 'web', 'web', [ep(PODS['pod-c'])]) });
    faults.inject = 'main';
    faults.stagesSeen = 0;
    await assert.rejects(backend.sync(b.next()), /NO-SUCH-CHAIN|line \d+ failed/);
    assert.equal(faults.stagesSeen, 3, 'the three new services were staged before the main restore failed');
    const nat = (await node.execOk('iptables-nft-save', ['-t', 'nat'])).stdout;
    assert.equal([...nat.matchAll(/^:KUBE-SVC-/gm)].length, 5, 'the staged chains are in the kernel');
    assert.doesNotMatch(nat, /^-A KUBE-SERVICES .*198\.18\.100\.1[234]/m, 'but KUBE-SERVICES does not jump to them');
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a', 'the changed service (the kernel\'s rules reach it: never staged) still goes where the last good sync sent it');
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');
    assert.match(await podReached(node, '198.18.100.12'), /^error: /, 'the new service is not reachable at all');

    // The retry (a full sync) fails in its second stage: still no new service reachable.
    faults.inject = 'stage2';
    faults.stagesSeen = 0;
    await assert.rejects(backend.sync(b.next()), /NO-SUCH-CHAIN|line \d+ failed/);
    assert.equal(faults.stagesSeen, 2, 'the failed stage was the last restore tried');
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a');
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');
    assert.match(await podReached(node, '198.18.100.13'), /^error: /);

    faults.inject = 'none';
    await backend.sync(b.next());
    for (const ip of ['198.18.100.10', '198.18.100.12', '198.18.100.13', '198.18.100.14']) assert.equal(await podReached(node, ip), 'pod-c', ip);
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');
    assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_iptables_restore_failures_total 2/);

    // What the staged syncs left is what one unstaged full restore of the same services leaves.
    const staged = await kproxyRules(node);
    assert.ok(!staged.some((l) => l.includes('NO-SUCH-CHAIN')));
    const unstaged = new IptablesBackend({ iptables: new Iptables({ exec, binary: 'iptables-nft' }), conntrack: new Conntrack(exec), clock: new FakeClock(), log: memoryLogger(), metrics: new ProxyMetrics(), render: RENDER });
    for (const table of ['nat', 'filter']) await node.execOk('iptables-nft', ['-t', table, '-F']);
    for (const table of ['nat', 'filter']) await node.execOk('iptables-nft', ['-t', table, '-X']);
    faults.stagesSeen = 0;
    await unstaged.sync(b.next());
    assert.equal(faults.stagesSeen, 0, 'under the default threshold: one restore');
    assert.deepEqual(staged, await kproxyRules(node));
  } finally {
    await ns?.destroy();
  }
});
