import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FakeExec } from '../../src/platform/exec.js';
import { traceCommand } from '../../src/netfilter/trace-cli.js';
import { fixture } from './fixtures.js';

/** Reads test/fixtures/nft/<name> (`nft -j list ruleset` of a test/golden/nftables file applied in a netns). */
function nftFixture(name: string): string {
  return readFileSync(fileURLToPath(new URL(`../../../test/fixtures/nft/${name}`, import.meta.url)), 'utf8');
}

const files: Record<string, string> = {
  'clusterip.json': nftFixture('clusterip.json'),
  'ipv6.json': nftFixture('ipv6.json'),
  'node.txt': fixture('node-iptables-save.txt'),
  'bad.json': '{"nftables": [',
};

async function run(argv: string[], exec = new FakeExec()): Promise<{ code: number; out: string; err: string; exec: FakeExec }> {
  let out = '';
  let err = '';
  const code = await traceCommand(argv, {
    exec: exec.exec, stdout: (s) => { out += s; }, stderr: (s) => { err += s; },
    hostAddresses: (f) => (f === 'IPv4' ? ['192.168.0.2'] : ['fd00:192:168::2']),
    readFile: (p) => (files[p] !== undefined ? Promise.resolve(files[p] ?? '') : Promise.reject(new Error(`ENOENT: no such file ${p}`))),
  });
  return { code, out, err, exec };
}

interface J { evaluators: string[]; notes: string[]; choices: { ip: string; probability: number; masquerade: boolean }[]; outcomes: { verdict: string }[] }

test('trace cli (nft): --from an nft -j list ruleset file', async () => {
  const r = await run(['--from', 'clusterip.json', '--src', '10.1.0.5', '--dst', '172.30.0.41', '--dport', '80', '--node-ip', '192.168.0.2', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as J;
  assert.deepEqual(j.evaluators, ['nftables']);
  assert.deepEqual(j.choices.map((c) => c.ip), ['10.180.0.1', '10.180.0.2', '10.180.0.3']);
  assert.equal(r.exec.calls.length, 0);
});

test('trace cli (nft): an iptables file and an nft file together', async () => {
  const r = await run(['--from', 'node.txt', '--from', 'clusterip.json', '--src', '10.1.0.5', '--dst', '172.30.0.41', '--dport', '80', '--node-ip', '192.168.0.2', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as J;
  assert.deepEqual(j.evaluators, ['iptables', 'nftables']);
  assert.equal(j.choices.length, 3);
});

test('trace cli (nft): IPv6 uses the ip6 table', async () => {
  const r = await run(['--from', 'ipv6.json', '--src', 'fd00:10::5', '--dst', 'fd00:172:30::41', '--dport', '80', '--node-ip', 'fd00:192:168::2']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /forwarded to fd00:10:180::1:80/);
});

test('trace cli (nft): a broken JSON file -> exit 1', async () => {
  const r = await run(['--from', 'bad.json', '--src', '10.1.0.5', '--dst', '172.30.0.41', '--dport', '80']);
  assert.equal(r.code, 1);
  assert.match(r.err, /^kproxy trace: cannot read the ruleset: not valid JSON/);
});

test('trace cli (nft): without --from reads iptables-save and nft of the namespace', async () => {
  const exec = new FakeExec();
  exec.respond((c) => c.cmd === 'iptables-save', { stdout: '' });
  exec.respond((c) => c.cmd === 'nft', { stdout: files['clusterip.json'] ?? '' });
  const r = await run(['--src', '10.1.0.5', '--dst', '172.30.0.41', '--dport', '80', '--json'], exec);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(exec.calls.map((c) => [c.cmd, ...c.args]), [['ipvsadm', '-Sn'], ['iptables-save'], ['nft', '-j', 'list', 'ruleset']]);
  const j = JSON.parse(r.out) as J;
  assert.deepEqual(j.evaluators, ['iptables', 'nftables']);
  assert.equal(j.choices.length, 3);
});

test('trace cli (nft): a missing tool is tolerated, both missing is an error', async () => {
  const noIpt = new FakeExec();
  noIpt.respond((c) => c.cmd === 'iptables-save', { code: 127, stderr: 'iptables-save: command not found' });
  noIpt.respond((c) => c.cmd === 'nft', { stdout: files['clusterip.json'] ?? '' });
  const a = await run(['--src', '10.1.0.5', '--dst', '172.30.0.41', '--dport', '80', '--json'], noIpt);
  assert.equal(a.code, 0, a.err);
  const ja = JSON.parse(a.out) as J;
  assert.deepEqual(ja.evaluators, ['nftables']);
  assert.ok(ja.notes.some((n) => n.startsWith('iptables-save failed (exit 127)')));

  const noNft = new FakeExec();
  noNft.respond((c) => c.cmd === 'iptables-save', { stdout: files['node.txt'] ?? '' });
  noNft.respond((c) => c.cmd === 'nft', { code: 127, stderr: 'nft: command not found' });
  const b = await run(['--src', '198.19.1.30', '--dst', '198.18.100.10', '--dport', '80', '--json'], noNft);
  assert.equal(b.code, 0, b.err);
  const jb = JSON.parse(b.out) as J;
  assert.deepEqual(jb.evaluators, ['iptables']);
  assert.ok(jb.notes.some((n) => n.includes('nft -j list ruleset failed (exit 127)')));

  const none = new FakeExec();
  none.respond(() => true, { code: 127, stderr: 'command not found' });
  const c = await run(['--src', '10.1.0.5', '--dst', '172.30.0.41', '--dport', '80'], none);
  assert.equal(c.code, 1);
  assert.match(c.err, /^kproxy trace: iptables-save failed \(exit 127\): command not found\nkproxy trace: nft -j list ruleset failed \(exit 127\)/);
});

test('trace cli (nft): iptables-nft tables in the nft dump are traced once, as iptables', async () => {
  const doc = JSON.parse(files['clusterip.json'] ?? '{}') as { nftables: unknown[] };
  doc.nftables.push({ table: { family: 'ip', name: 'nat', handle: 99 } }, { chain: { family: 'ip', table: 'nat', name: 'PREROUTING', type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' } });
  const exec = new FakeExec();
  exec.respond((c) => c.cmd === 'iptables-save', { stdout: '*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n' });
  exec.respond((c) => c.cmd === 'nft', { stdout: JSON.stringify(doc) });
  const r = await run(['--src', '10.1.0.5', '--dst', '172.30.0.41', '--dport', '80', '--json'], exec);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as J & { trunk: { kind: string; label?: string }[] };
  assert.ok(j.notes.some((n) => n.includes('ip nat')), j.notes.join('\n'));
  assert.deepEqual(j.trunk.filter((e) => e.kind === 'stage').map((e) => e.label), ['ip kube-proxy filter-prerouting', 'nat', 'ip kube-proxy nat-prerouting']);
});
