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
import { textOf } from '../../src/core/text.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { FakeClock } from '../../src/platform/clock.js';
import { Conntrack } from '../../src/platform/conntrack.js';
import type { Exec } from '../../src/platform/exec.js';
import { cleanupStaleNetns, createNetns, kernelTestGate, type Netns } from '../../src/platform/netns.js';
import { nodeWithPods, podReached } from '../helpers/netns-util.js';
import { ep, slice, svc } from '../helpers/objects.js';

const PODS = { 'pod-a': '198.18.10.2', 'pod-b': '198.18.10.3', 'pod-c': '198.18.10.4' } as const;

test('staged nftables syncs: a failure after the stages leaves traffic exactly as before, and the retry completes it', { timeout: 120_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['nft', 'conntrack'] }))) return;
  await cleanupStaleNetns('nft-staged');
  let ns: Netns | undefined;
  try {
    ns = await createNetns('nft-staged');
    const node = ns;
    await nodeWithPods(node, PODS, 110_000);

    // inject: 'main' makes the kernel reject the main transaction (the one with map elements);
    // 'stage2' the second staging transaction. Both by a rule into a chain that does not exist.
    let inject: 'none' | 'main' | 'stage2' = 'none';
    let stagesSeen = 0;
    const exec: Exec = (cmd, args, options) => {
      let input = options?.input === undefined ? undefined : textOf(options.input);
      if (cmd === 'nft' && args[0] === '-f' && input !== undefined) {
        const main = input.includes(' element ');
        if (!main) stagesSeen++;
        if ((inject === 'main' && main) || (inject === 'stage2' && !main && stagesSeen === 2)) input += 'add rule ip kube-proxy no-such-chain accept\n';
      }
      return node.exec(cmd, args, { ...options, ...(input === undefined ? {} : { input }), timeoutMs: 30_000 });
    };
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
    stagesSeen = 0;
    await backend.sync(b.next());
    assert.ok(stagesSeen >= 2, `the first sync staged its ports (${stagesSeen} staging transactions)`);
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a');
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');

    // A new service and a changed one, in one sync whose main transaction the kernel rejects.
    for (const i of [12, 13, 14]) {
      b.handle({ kind: 'Service', type: 'add', object: svc('ns1', `new${i}`, { clusterIP: `198.18.100.${i}` }) });
      b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', `new${i}`, `new${i}`, [ep(PODS['pod-c'])]) });
    }
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: webSlice, object: slice('ns1', 'web', 'web', [ep(PODS['pod-c'])]) });
    inject = 'main';
    stagesSeen = 0;
    await assert.rejects(backend.sync(b.next()), /no-such-chain|No such file or directory/);
    assert.ok(stagesSeen >= 2, `staging transactions committed before the main one failed (${stagesSeen})`);
    const chains = (await node.execOk('nft', ['list', 'chains', 'ip'])).stdout;
    assert.match(chains, /chain service-\S+-ns1\/new12\/tcp\/http \{/, 'the staged chains are in the kernel');
    const map = (await node.execOk('nft', ['list', 'map', 'ip', 'kube-proxy', 'service-ips'])).stdout;
    assert.doesNotMatch(map, /198\.18\.100\.1[234]/, 'but nothing refers to them');
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a', 'the changed service still goes where the last good sync sent it');
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');
    assert.match(await podReached(node, '198.18.100.12'), /^error: /, 'the new service is not reachable at all');

    // The retry (a full sync) fails in its second stage: still nothing changes for traffic.
    inject = 'stage2';
    stagesSeen = 0;
    await assert.rejects(backend.sync(b.next()), /no-such-chain|No such file or directory/);
    assert.equal(stagesSeen, 2, 'the failed stage was the last transaction tried');
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-a');
    assert.match(await podReached(node, '198.18.100.13'), /^error: /);

    inject = 'none';
    await backend.sync(b.next());
    assert.equal(await podReached(node, '198.18.100.10'), 'pod-c', 'the retried sync applies everything');
    for (const ip of ['198.18.100.12', '198.18.100.13', '198.18.100.14']) assert.equal(await podReached(node, ip), 'pod-c', ip);
    assert.equal(await podReached(node, '198.18.100.11'), 'pod-b');
    assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_nftables_sync_failures_total 2/);
  } finally {
    await ns?.destroy();
  }
});
