/**
 * kproxy follows the iptables backend the node already uses (as upstream's image does): real
 * tools in a fresh namespace, where kubelet's hint chain or existing rules decide.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectIptablesBackend } from '../../src/platform/iptables.js';
import { FakeExec } from '../../src/platform/exec.js';
import { cleanupStaleNetns, createNetns, kernelTestGate, type Netns } from '../../src/platform/netns.js';

test('detection: hint chain first, then the backend with more rules, else the default iptables', { timeout: 60_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['iptables-legacy', 'iptables-nft'] }))) return;
  await cleanupStaleNetns('ipt-detect');
  let ns: Netns | undefined;
  try {
    ns = await createNetns('ipt-detect');
    const exec = ns.exec.bind(ns);
    assert.equal((await detectIptablesBackend(exec)).binary, 'iptables', 'nothing anywhere: the default');
    await ns.execOk('iptables-nft', ['-t', 'filter', '-N', 'SOMEONE']);
    await ns.execOk('iptables-nft', ['-t', 'filter', '-A', 'SOMEONE', '-j', 'RETURN']);
    assert.equal((await detectIptablesBackend(exec)).binary, 'iptables-nft', 'rules only in nf_tables');
    await ns.execOk('iptables-legacy', ['-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
    const choice = await detectIptablesBackend(exec);
    assert.equal(choice.binary, 'iptables-legacy', 'kubelet marked the node legacy');
    assert.match(choice.reason, /hint/);
  } finally {
    await ns?.destroy();
  }
});

test('detection without iptables-legacy or iptables-nft installed falls back to iptables', async () => {
  const fake = new FakeExec();
  fake.respond(() => true, { code: 127 });
  assert.deepEqual(await detectIptablesBackend(fake.exec), { binary: 'iptables', reason: 'neither iptables-legacy nor iptables-nft is installed; using the default iptables' });
});

test('detection: more legacy rules than nf_tables rules picks legacy', async () => {
  const fake = new FakeExec();
  fake.respond((c) => c.cmd === 'iptables-legacy-save' && c.args.length === 0, { stdout: '*nat\n-A A -j RETURN\n-A B -j RETURN\nCOMMIT\n' });
  fake.respond((c) => c.cmd === 'iptables-nft-save' && c.args.length === 0, { stdout: '*nat\n-A A -j RETURN\nCOMMIT\n' });
  assert.equal((await detectIptablesBackend(fake.exec)).binary, 'iptables-legacy');
});
