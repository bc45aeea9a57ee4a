/**
 * IPVS mode on a kernel without IPVS (this machine's): the real kproxy, started with
 * --proxy-mode ipvs in a node namespace, logs one line naming what is missing, runs iptables
 * mode, serves a ClusterIP with real packets, and /proxyMode answers "iptables".
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupStaleNetns, kernelTestGate, type NetnsProcess } from '../../src/platform/netns.js';
import { buildCluster, CLUSTER_CIDR, scenarioManifest, WEB, type Cluster } from '../helpers/cluster.js';
import { KPROXY_BIN, pollUntil, rootNetworkState, runClient } from '../helpers/netns-util.js';

test('ipvs mode without kernel IPVS falls back to iptables mode and serves traffic', { timeout: 120_000 }, async (t) => {
  if (existsSync('/proc/net/ip_vs')) {
    t.skip('this kernel has IPVS: the fallback cannot be observed here (the VM tests cover ipvs mode)');
    return;
  }
  if (!(await kernelTestGate(t, { tools: ['iptables', 'iptables-restore', 'conntrack'] }))) return;
  const prefix = 'ipvs-fb';
  await cleanupStaleNetns(prefix);
  const rootBefore = await rootNetworkState();
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-ipvs-fb-'));
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, scenarioManifest(['pod-a', 'pod-b', 'pod-c'], ['pod-a', 'pod-b']));
  let cluster: Cluster | undefined;
  let kp: NetnsProcess | undefined;
  try {
    cluster = await buildCluster(prefix);
    const node1 = cluster.node1;
    kp = node1.spawn(process.execPath, [KPROXY_BIN, '--proxy-mode', 'ipvs', '--manifests', file, '--hostname-override', 'node1',
      '--cluster-cidr', CLUSTER_CIDR, '--conntrack-max-per-core', '0', '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249',
      '--iptables-min-sync-period', '0s', '--iptables-sync-period', '2s', '-v', '2']);
    const p = kp;
    await pollUntil('kproxy to sync', () => {
      if (!p.running) throw new Error(`kproxy exited: ${p.stderr().slice(-3000)}`);
      return /"synced proxy rules"/.test(p.stderr());
    }, { timeoutMs: 20_000, describeLast: () => p.stderr().slice(-3000) });

    const fallback = p.stderr().split('\n').filter((l) => l.includes('IPVS proxy mode is not available'));
    assert.equal(fallback.length, 1, `exactly one fallback line:\n${p.stderr().slice(-3000)}`);
    assert.match(fallback[0] ?? '', /running iptables mode instead: missing the kernel's IPVS \(no \/proc\/net\/ip_vs; modprobe ip_vs failed: /);
    assert.match(p.stderr(), /"starting kproxy" mode="iptables"/);

    const r = await runClient<string>(node1, ['tcp', WEB, '80', '20', '3000']);
    assert.ok(r.ok, r.error);
    assert.deepEqual(new Set(r.replies.map((x) => x.split(' ')[0])), new Set(['pod-a', 'pod-b', 'pod-c']), 'every endpoint reached through the iptables rules');
    const save = await node1.execOk('iptables-save', ['-t', 'nat']);
    assert.match(save.stdout, /-A KUBE-SERVICES .*-d 198\.18\.100\.10\/32 .*-j KUBE-SVC-/, 'iptables mode\'s per-service chains, not IPVS ones');

    const mode = await node1.execOk(process.execPath, ['-e', "fetch('http://127.0.0.1:10249/proxyMode').then(r => r.text()).then(t => process.stdout.write(t))"]);
    assert.equal(mode.stdout, 'iptables');
  } finally {
    if (kp) await kp.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
    await cluster?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(await rootNetworkState(), rootBefore, 'the root namespace is untouched');
});
