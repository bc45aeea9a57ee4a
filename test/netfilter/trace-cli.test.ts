import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeExec } from '../../src/platform/exec.js';
import { traceCommand } from '../../src/netfilter/trace-cli.js';
import { fixture, goldenSource } from './fixtures.js';

const files: Record<string, string> = {
  'node.txt': fixture('node-iptables-save.txt'),
  'dry-run.txt': goldenSource('iptables/clusterip.txt'),
};

async function run(argv: string[], exec = new FakeExec()): Promise<{ code: number; out: string; err: string; exec: FakeExec }> {
  let out = '';
  let err = '';
  const code = await traceCommand(argv, {
    exec: exec.exec, stdout: (s) => { out += s; }, stderr: (s) => { err += s; },
    hostAddresses: () => ['198.18.0.10'],
    readFile: (p) => (files[p] !== undefined ? Promise.resolve(files[p] ?? '') : Promise.reject(new Error(`ENOENT: no such file ${p}`))),
  });
  return { code, out, err, exec };
}

const bad: [string, string[], RegExp][] = [
  ['missing --src', ['--dst', '1.2.3.4', '--dport', '80'], /^kproxy trace: missing required flag --src\n$/],
  ['missing --dport', ['--src', '1.2.3.4', '--dst', '1.2.3.5'], /^kproxy trace: missing required flag --dport\n$/],
  ['bad IP', ['--src', '1.2.3', '--dst', '1.2.3.5', '--dport', '80'], /^kproxy trace: invalid value "1.2.3" for --src: must be an IP address\n$/],
  ['bad port', ['--src', '1.2.3.4', '--dst', '1.2.3.5', '--dport', '70000'], /^kproxy trace: invalid value "70000" for --dport: must be a port 1-65535\n$/],
  ['bad protocol', ['--src', '1.2.3.4', '--dst', '1.2.3.5', '--dport', '80', '--protocol', 'icmp'], /^kproxy trace: invalid value "icmp" for --protocol/],
  ['unknown flag', ['--src', '1.2.3.4', '--bogus'], /^kproxy trace: unknown flag --bogus\n$/],
  ['flag without value', ['--src'], /^kproxy trace: flag --src needs a value\n$/],
  ['positional', ['extra'], /^kproxy trace: unexpected argument extra\n$/],
  ['mixed families', ['--src', '1.2.3.4', '--dst', '::1', '--dport', '80'], /same IP family/],
];
for (const [name, argv, re] of bad) {
  test(`trace cli: ${name} -> exit 2, one line`, async () => {
    const r = await run(argv);
    assert.equal(r.code, 2);
    assert.match(r.err, re);
    assert.equal(r.err.split('\n').length, 2);
  });
}

test('trace cli: --from a dump, human output', async () => {
  const r = await run(['--from', 'node.txt', '--src', '198.19.1.30', '--dst', '198.18.100.10', '--dport', '80', '--node-ip', '198.18.0.10']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /33\.33% \(1\/3\)\s+ACCEPT, forwarded to 198\.19\.2\.13:8080/);
  assert.equal(r.exec.calls.length, 0);
});

test('trace cli: --json is the plain result', async () => {
  const r = await run(['--from', 'node.txt', '--src', '198.18.60.5', '--dst', '198.18.0.10', '--dport', '30050', '--node-ip', '198.18.0.10', '--json']);
  const j = JSON.parse(r.out) as { choices: { ip: string; masquerade: boolean }[] };
  assert.deepEqual(j.choices.map((c) => [c.ip, c.masquerade]), [['198.19.1.51', false]]);
});

test('trace cli: a --dry-run restore input gets the standard jumps', async () => {
  const r = await run(['--from', 'dry-run.txt', '--src', '10.0.0.5', '--dst', '172.30.0.10', '--dport', '80', '--node-ip', '192.0.2.10', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { notes: string[]; choices: { ip: string; probability: number }[] };
  assert.ok(j.notes.some((n) => n.includes('standard jump rules')));
  assert.ok(j.choices.length > 1);
  assert.ok(j.choices.every((c) => c.ip !== '172.30.0.10'));
  assert.ok(Math.abs(j.choices.reduce((a, c) => a + c.probability, 0) - 1) < 1e-9);
});

test('trace cli: without --from runs iptables-save and uses the host addresses', async () => {
  const exec = new FakeExec();
  exec.respond((c) => c.cmd === 'iptables-save', { stdout: files['node.txt'] ?? '' });
  const r = await run(['--src', '198.18.60.5', '--dst', '198.18.0.10', '--dport', '30999'], exec);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(exec.calls.map((c) => c.cmd), ['ipvsadm', 'iptables-save', 'nft'], 'reads ipvsadm -Sn (empty here, so no ipset or -Ln), iptables-save and nft -j list ruleset');
  assert.match(r.out, /delivered locally to 198\.18\.0\.10:30999/);
});

test('trace cli: iptables-save failing or an unreadable file -> exit 1', async () => {
  const exec = new FakeExec();
  exec.respond(() => true, { code: 4, stderr: 'iptables-save: Permission denied (you must be root)\n' });
  const r = await run(['--src', '1.2.3.4', '--dst', '1.2.3.5', '--dport', '80'], exec);
  assert.equal(r.code, 1);
  assert.match(r.err, /^kproxy trace: iptables-save failed \(exit 4\): iptables-save: Permission denied/);
  const r2 = await run(['--from', 'nope.txt', '--src', '1.2.3.4', '--dst', '1.2.3.5', '--dport', '80']);
  assert.equal(r2.code, 1);
  assert.match(r2.err, /cannot read the ruleset: ENOENT/);
});

test('trace cli: --help', async () => {
  const r = await run(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.out, /^usage: kproxy trace/);
});
