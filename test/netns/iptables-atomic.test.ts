/**
 * iptables-restore commits table by table. When the nat table of a sync fails after filter was
 * committed, kproxy must put filter back: the kernel never holds half a sync. Proven in a
 * namespace with the real tools; the failure is injected into the nat section of the input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IptablesBackend } from '../../src/backends/iptables/backend.js';
import { SnapshotBuilder } from '../../src/core/snapshot.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { Conntrack } from '../../src/platform/conntrack.js';
import type { Exec } from '../../src/platform/exec.js';
import { Iptables } from '../../src/platform/iptables.js';
import { cleanupStaleNetns, createNetns, kernelTestGate, type Netns } from '../../src/platform/netns.js';
import { ep, slice, svc } from '../helpers/objects.js';
import { iptablesSave } from '../helpers/netns-util.js';
import { textOf } from '../../src/core/text.js';

test('a restore that fails in the nat table leaves filter and nat exactly as the last good sync', { timeout: 60_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['iptables', 'iptables-restore'] }))) return;
  await cleanupStaleNetns('ipt-atomic');
  let ns: Netns | undefined;
  try {
    ns = await createNetns('ipt-atomic');
    const node = ns;
    let inject = false;
    const exec: Exec = (cmd, args, options) => {
      let input = options?.input === undefined ? undefined : textOf(options.input);
      if (inject && cmd === 'iptables-restore' && input !== undefined) {
        // A match module the kernel does not have, in the nat section only.
        input = input.replace(/\*nat\n/, '*nat\n:KUBE-BROKEN - [0:0]\n-A KUBE-BROKEN -m nosuchmatch -j ACCEPT\n');
      }
      return node.exec(cmd, args, input === undefined ? {} : { input });
    };
    const metrics = new ProxyMetrics();
    const log = memoryLogger();
    const backend = new IptablesBackend({
      iptables: new Iptables({ exec }), conntrack: new Conntrack(exec), log, metrics,
      render: { nodeName: 'n1', nodeIPs: [], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: false, family: 'IPv4' },
    });
    const b = new SnapshotBuilder('n1');
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: '198.18.100.10' }) });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.10.2')]) });
    await backend.sync(b.next());
    const good = { filter: await iptablesSave(node, 'filter'), nat: await iptablesSave(node, 'nat') };
    assert.match(good.nat, /KUBE-SVC-/);

    // A change that touches both tables: a service without endpoints (filter REJECT) and a new endpoint (nat).
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'empty', { clusterIP: '198.18.100.13' }) });
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: slice('ns1', 'w', 'web', [ep('198.18.10.2')]), object: slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]) });
    inject = true;
    await assert.rejects(backend.sync(b.next()), /nosuchmatch/);
    assert.equal(await iptablesSave(node, 'filter'), good.filter, 'filter is back to the last good sync');
    assert.equal(await iptablesSave(node, 'nat'), good.nat, 'nat was never changed');
    assert.ok(log.lines.some((l) => l.includes('rolled back the tables a failed restore had already committed')));
    assert.match(await metrics.text(), /kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1/);

    inject = false;
    await backend.sync(b.next(true));
    const after = await iptablesSave(node, 'filter');
    assert.match(after, /ns1\/empty:http has no endpoints/, 'the retried full sync applies everything');
    assert.match(await iptablesSave(node, 'nat'), /198\.18\.10\.3:8080/);
  } finally {
    await ns?.destroy();
  }
});
