/**
 * nftables mode writes the chains of new service ports in staging transactions ahead of the one
 * transaction that makes traffic reach them (serializeStages). Proven here with real packets in
 * a namespace: when a sync fails after its stages committed (the main transaction rejected by
 * the kernel, or a later stage), every service keeps answering as after the last good sync, the
 * new service is not reachable at all, and the retried sync makes everything reachable.
 * The node namespace holds the pods' addresses on lo and routes the ClusterIPs to a veth
 * device (whose peer answers nothing), so connections from the node itself go through nat-output's DNAT.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NftablesBackend } from '../../src/backends/nftables/backend.js';
import { SnapshotBuilder } from '../../src/core/snapshot.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { FakeClock } from '../../src/platform/clock.js';
import { Conntrack } from '../../src/platform/conntrack.js';
import { kernelTestGate, type Netns } from '../../src/platform/netns.js';
import { nodeWithPods, podReached, StageFaults } from '../helpers/netns-util.js';
import { ep, slice, svc } from '../helpers/objects.js';

const PODS = { 'pod-a': '198.18.10.2', 'pod-b': '198.18.10.3', 'pod-c': '198.18.10.4' } as const;

test('staged nftables syncs: a failure after the stages leaves traffic exactly as before, and the retry completes it', { timeout: 120_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['nft', 'conntrack'] }))) return;
  let ns: Netns | undefined;
  try {
    ns = await nodeWithPods('nft-staged', PODS, 110_000);
    const node = ns;
    // The main transaction is the one with map elements; a rule into a chain that does not exist breaks one.
    const faults = new StageFaults(node, {
      tool: (cmd, args) => cmd === 'nft' && args[0] === '-f',
      isMain: (_, input) => input.includes(' element '),
      broken: (input) => `${input}add rule ip kube-proxy no-such-chain accept\n`,
    });
    const exec = faults.exec;
    const metrics = new ProxyMetrics();
    const backend = new NftablesBackend({
      exec, conntrack: new Conntrack(exec), clock: new FakeClock(), log: memoryLogger(), metrics, stageLines: 8,
      render: { nodeName: 'n1', nodeIPs: ['198.18.0.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/16'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4' },
    });
    const b = new SnapshotBuilder('n1');
    const web = svc('ns1', 'web', { clusterIP: '198.18.100.10' });
    const webSlice = slice('ns1', 'web', 'web', [ep(PODS['pod-a'])]);
    b.handle({ kind: 'Service', type: 'add', object: web });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: webSlice });
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'sticky', { clusterIP: '198.18.100.11', sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 }) });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'sticky', 'sticky', [ep(PODS['pod-b'])]) });
    faults.stagesSeen = 0;
    await backend.sync(b.next());
    assert.ok(faults.stagesSeen >= 2, `the first sync staged its ports (${faults.stagesSeen} staging transactions)`);
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a');
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');

    // A new service and a changed one, in one sync whose main transaction the kernel rejects.
    for (const i of [12, 13, 14]) {
      b.handle({ kind: 'Service', type: 'add', object: svc('ns1', `new${i}`, { clusterIP: `198.18.100.${i}` }) });
      b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', `new${i}`, `new${i}`, [ep(PODS['pod-c'])]) });
    }
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: webSlice, object: slice('ns1', 'web', 'web', [ep(PODS['pod-c'])]) });
    faults.inject = 'main';
    faults.stagesSeen = 0;
    await assert.rejects(backend.sync(b.next()), /no-such-chain|No such file or directory/);
    assert.ok(faults.stagesSeen >= 2, `staging transactions committed before the main one failed (${faults.stagesSeen})`);
    const chains = (await node.execOk('nft', ['list', 'chains', 'ip'])).stdout;
    assert.match(chains, /chain service-\S+-ns1\/new12\/tcp\/http \{/, 'the staged chains are in the kernel');
    const map = (await node.execOk('nft', ['list', 'map', 'ip', 'kube-proxy', 'service-ips'])).stdout;
    assert.doesNotMatch(map, /198\.18\.100\.1[234]/, 'but nothing refers to them');
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a', 'the changed service still goes where the last good sync sent it');
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');
    assert.match(await podReached(node, '198.18.100.12'), /^error: /, 'the new service is not reachable at all');

    // The retry (a full sync) fails in its second stage: still nothing changes for traffic.
    faults.inject = 'stage2';
    faults.stagesSeen = 0;
    await assert.rejects(backend.sync(b.next()), /no-such-chain|No such file or directory/);
    assert.equal(faults.stagesSeen, 2, 'the failed stage was the last transaction tried');
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a');
    assert.match(await podReached(node, '198.18.100.13'), /^error: /);

    faults.inject = 'none';
    await backend.sync(b.next());
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-c', 'the retried sync applies everything');
    for (const ip of ['198.18.100.12', '198.18.100.13', '198.18.100.14']) assert.equal(await podReached(node, ip), 'pod-c', ip);
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');
    assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_nftables_sync_failures_total 2/);
  } finally {
    await ns?.destroy();
  }
});
