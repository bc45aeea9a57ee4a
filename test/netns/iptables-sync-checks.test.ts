/**
 * What iptables mode runs besides the restore, with the real tools in a namespace: a second full
 * sync finds the jumps and canaries in its dumps and adds nothing; a sync for a change checks
 * only the mangle canary; a periodic sync (no change) checks every jump, writes nothing when all
 * are in place and repairs a deleted one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IptablesBackend } from '../../src/backends/iptables/backend.js';
import { SnapshotBuilder } from '../../src/core/snapshot.js';
import { memoryLogger } from '../../src/observability/log.js';
import { ProxyMetrics } from '../../src/observability/metrics.js';
import { Conntrack } from '../../src/platform/conntrack.js';
import type { Exec, ExecCall } from '../../src/platform/exec.js';
import { Iptables } from '../../src/platform/iptables.js';
import { cleanupStaleNetns, createNetns, kernelTestGate, type Netns } from '../../src/platform/netns.js';
import { ep, slice, svc } from '../helpers/objects.js';
import { iptablesSave } from '../helpers/netns-util.js';
import { textOf } from '../../src/core/text.js';

test('iptables mode: jumps found in the dumps are not re-added; change syncs check only the canary', { timeout: 60_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['iptables', 'iptables-restore'] }))) return;
  await cleanupStaleNetns('ipt-checks');
  let ns: Netns | undefined;
  try {
    ns = await createNetns('ipt-checks');
    const node = ns;
    const calls: ExecCall[] = [];
    const exec: Exec = (cmd, args, options) => {
      calls.push({ cmd, args: [...args], input: options?.input === undefined ? undefined : textOf(options.input) });
      return node.exec(cmd, args, options?.input === undefined ? {} : { input: options.input });
    };
    const log = memoryLogger();
    const backend = new IptablesBackend({
      iptables: new Iptables({ exec }), conntrack: new Conntrack(exec), log, metrics: new ProxyMetrics(),
      render: { nodeName: 'n1', nodeIPs: [], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: false, family: 'IPv4' },
    });
    const b = new SnapshotBuilder('n1');
    b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: '198.18.100.10' }) });
    const w = slice('ns1', 'w', 'web', [ep('198.18.10.2')]);
    b.handle({ kind: 'EndpointSlice', type: 'add', object: w });
    await backend.sync(b.next());
    assert.deepEqual(calls.map((c) => c.cmd).filter((c) => c !== 'conntrack'), ['iptables-save', 'iptables-save', 'iptables', 'iptables-restore'],
      'dumps, the mangle canary check, then one restore for rules, canaries and jumps');
    const nat = await iptablesSave(node, 'nat');
    for (const chain of ['PREROUTING', 'OUTPUT']) assert.match(nat, new RegExp(`^-A ${chain} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES$`, 'm'));
    assert.match(await iptablesSave(node, 'mangle'), /^:KUBE-PROXY-CANARY /m);
    const first = { filter: await iptablesSave(node, 'filter'), nat: await iptablesSave(node, 'nat') };

    calls.length = 0;
    await backend.sync(b.next(true));
    const cmds = calls.filter((c) => c.cmd === 'iptables').map((c) => c.args.join(' '));
    assert.deepEqual(cmds, ['-w 5 -t mangle -S KUBE-PROXY-CANARY'], 'only the mangle canary, which the filter/nat dumps cannot show');
    assert.equal(calls.filter((c) => c.cmd === 'iptables-restore').length, 1, 'the rules only: nothing else to add');
    assert.equal(await iptablesSave(node, 'filter'), first.filter, 'the same rules, each jump once');
    assert.equal(await iptablesSave(node, 'nat'), first.nat);

    calls.length = 0;
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: w, object: slice('ns1', 'w', 'web', [ep('198.18.10.2'), ep('198.18.10.3')]) });
    await backend.sync(b.next());
    assert.deepEqual(calls.filter((c) => c.cmd !== 'conntrack').map((c) => `${c.cmd} ${c.args.join(' ')}`), [
      'iptables -w 5 -t mangle -S KUBE-PROXY-CANARY',
      'iptables-restore -w 5 --noflush --counters',
    ], 'a change: the canary, then one restore');

    calls.length = 0;
    const before = await iptablesSave(node, 'nat');
    await backend.sync(b.next());
    assert.ok(calls.some((c) => c.cmd === 'iptables' && c.args.includes('-C') && c.args.includes('PREROUTING')), 'a periodic sync checks the jumps');
    assert.deepEqual(calls.filter((c) => c.cmd !== 'iptables').map((c) => c.cmd), [], 'nothing changed and all in place: no dump, no restore');
    assert.equal(await iptablesSave(node, 'nat'), before);

    await node.execOk('iptables', ['-t', 'nat', '-D', 'PREROUTING', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
    await backend.sync(b.next());
    assert.ok(log.lines.some((l) => l.includes('flushed or deleted by someone else')), 'a periodic sync checks the jumps');
    assert.match(await iptablesSave(node, 'nat'), /-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);
  } finally {
    await ns?.destroy();
  }
});
