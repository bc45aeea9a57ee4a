/**
 * Inside the IPVS VM (run by test/vm/ipvs-vm.test.ts): the guest kernel serves real IPVS
 * traffic in a namespace. A virtual server programmed by hand with ipvsadm in the director's
 * namespace spreads real TCP connections over both real servers (masquerade forwarding, the
 * client's address preserved), the dummy kube-ipvs0 holds the virtual address, and IPVS state
 * is per namespace (the guest's root namespace has no virtual server).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanupStaleNetns, kernelTestGate, runHost } from '../../src/platform/netns.js';
import { runClient } from '../helpers/netns-util.js';
import { assertInGuest, CLIENT_IPS, ipvsTopology, SERVER_PORT, VIPS } from '../helpers/vm-guest.js';

test('guest: ipvsadm virtual server in a namespace balances real TCP connections over both real servers', { timeout: 300_000 }, async (t) => {
  assertInGuest();
  if (!(await kernelTestGate(t, { tools: ['ipvsadm'] }))) return;
  await cleanupStaleNetns('vm-smoke-lb');
  const topo = await ipvsTopology('vm-smoke', ['real-a', 'real-b']);
  try {
    const vip = VIPS[0] ?? '';
    const links = await topo.lbExec('ip', ['-o', 'link', 'show', 'kube-ipvs0']);
    assert.match(links, /kube-ipvs0: <BROADCAST,NOARP/, 'the dummy interface exists in the director namespace');
    await topo.lbExec('ipvsadm', ['-A', '-t', `${vip}:80`, '-s', 'rr']);
    for (const s of topo.servers) await topo.lbExec('ipvsadm', ['-a', '-t', `${vip}:80`, '-r', `${s.ip}:${SERVER_PORT}`, '-m', '-w', '1']);

    const r = await runClient<string>(topo.client, ['tcp', vip, '80', '6', '5000'], 60_000);
    assert.ok(r.ok, `connections through the virtual server: ${r.error ?? ''}`);
    const names = r.replies.map((l) => l.split(' ')[0]);
    // rr alternates; the kernel lists the last added real server first, so real-b leads.
    assert.deepEqual(names, ['real-b', 'real-a', 'real-b', 'real-a', 'real-b', 'real-a']);
    for (const l of r.replies) assert.equal(l.split(' ')[1]?.replace(/:\d+$/, ''), CLIENT_IPS[0], `masquerade forwarding keeps the client address: ${l}`);

    // Each real server holds its 3 connections as inactive (closed, in TIME_WAIT) entries.
    const table = await topo.lbExec('ipvsadm', ['-Ln']);
    for (const s of topo.servers) {
      assert.match(table, new RegExp(`-> ${s.ip.replace(/\./g, '\\.')}:${SERVER_PORT}\\s+Masq\\s+1\\s+0\\s+3\\b`), `the kernel's counters for ${s.name}:\n${table}`);
    }
    const root = await runHost('ipvsadm', ['-Ln']);
    assert.equal(root.code, 0, root.stderr);
    const rootTable = root.stdout;
    assert.doesNotMatch(rootTable, /TCP\s/, 'IPVS state is per namespace: the guest root namespace has no virtual server');
  } finally {
    await topo.destroy();
  }
});
