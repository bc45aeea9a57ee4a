/**
 * `--dry-run`: the kernel modes print the exact input a full sync applies and touch nothing;
 * `kproxy trace --from` reads that output back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateCluster, writeManifests } from '../../bench/cluster-gen.js';
import { serviceChainNames } from '../../src/backends/iptables/names.js';

const BIN = fileURLToPath(new URL('../../../bin/kproxy.js', import.meta.url));
const DEMO = fileURLToPath(new URL('../../../examples/demo.yaml', import.meta.url));

function kproxy(args: string[]): { status: number | null; stdout: string; stderr: string } {
  // PATH without the kernel tools' directories: a dry run must not need (or run) them.
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });
}

test('--dry-run prints the iptables-restore input for the manifests, deterministically, without running any tool', () => {
  const args = ['--proxy-mode', 'iptables', '--dry-run', '--manifests', DEMO, '--hostname-override', 'laptop'];
  const a = kproxy(args);
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /^\*filter\n/);
  assert.match(a.stdout, /\nCOMMIT\n\*nat\n[\s\S]*\nCOMMIT\n$/);
  const web = serviceChainNames('demo/web:http', 'tcp').cluster;
  assert.match(a.stdout, new RegExp(`^-A KUBE-SERVICES .*-d 127\\.0\\.10\\.1 --dport 8080 -j ${web}$`, 'm'));
  assert.equal((a.stdout.match(new RegExp(`^-A ${web} .*-j KUBE-SEP-`, 'gm')) ?? []).length, 3, 'one jump per endpoint');
  assert.equal(kproxy(args).stdout, a.stdout, 'the same input gives the same text');

  const dir = mkdtempSync(join(tmpdir(), 'kproxy-dry-'));
  try {
    const file = join(dir, 'rules.txt');
    writeFileSync(file, a.stdout);
    const t = kproxy(['trace', '--from', file, '--src', '198.18.0.5', '--dst', '127.0.10.1', '--dport', '8080', '--local', '--json']);
    assert.equal(t.status, 0, t.stderr);
    const choices = (JSON.parse(t.stdout) as { choices: { ip: string; probability: number }[] }).choices;
    assert.deepEqual(choices.map((c) => c.ip).sort(), ['127.0.20.1', '127.0.20.2', '127.0.20.3']);
    for (const c of choices) assert.ok(Math.abs(c.probability - 1 / 3) < 1e-6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--dry-run prints the nft transaction for nftables mode; userspace mode has nothing to print (exit 2)', () => {
  const n = kproxy(['--proxy-mode', 'nftables', '--dry-run', '--manifests', DEMO, '--hostname-override', 'laptop']);
  assert.equal(n.status, 0, n.stderr);
  assert.match(n.stdout, /^add table ip kube-proxy/);
  assert.match(n.stdout, /ip daddr 127\.0\.10\.1 tcp dport 8080|127\.0\.10\.1 \. tcp \. 8080/);
  const u = kproxy(['--proxy-mode', 'userspace', '--dry-run', '--manifests', DEMO]);
  assert.equal(u.status, 2);
  assert.match(u.stderr, /--dry-run applies to the kernel modes/);
});

test('--dry-run into a file writes the same text as into a pipe (it takes another path: no Buffer per chunk)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-dry-'));
  try {
    // Several chunks of text.
    writeManifests(generateCluster({ services: 120, endpointsPerService: 10, nodeName: 'n1' }), dir);
    for (const mode of ['iptables', 'nftables']) {
      const args = [BIN, '--proxy-mode', mode, '--dry-run', '--manifests', dir, '--hostname-override', 'n1'];
      const piped = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
      assert.equal(piped.status, 0, piped.stderr);
      assert.ok(piped.stdout.length > 200_000, `${piped.stdout.length} characters`);
      const file = join(dir, `out-${mode}.txt`);
      const fd = openSync(file, 'w');
      try {
        const r = spawnSync(process.execPath, args, { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
      } finally {
        closeSync(fd);
      }
      assert.equal(readFileSync(file, 'utf8'), piped.stdout, mode);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
