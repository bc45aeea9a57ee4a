import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/config/config.js';
import { parseFlags } from '../../src/config/flags.js';
import { aggregate } from '../../src/config/validation.js';

const BIN = fileURLToPath(new URL('../../../bin/kproxy.js', import.meta.url));
const DEMO = fileURLToPath(new URL('../../../examples/demo.yaml', import.meta.url));
const HEAD = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';

/** Loads `body` as a --config file (after HEAD unless `bare`); returns the error's text after the wrapping. */
function rejection(body: string, extra: string[] = [], bare = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-cfgmsg-'));
  const file = join(dir, 'bad.yaml');
  try {
    writeFileSync(file, (bare ? '' : HEAD) + body);
    let message = '';
    assert.throws(() => parseFlags(['--config', file, ...extra]), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      message = err.message;
      return true;
    }, body);
    const prefix = `invalid configuration (--config ${file}): `;
    assert.ok(message.startsWith(prefix), `the message names the file: ${message}`);
    return message.slice(prefix.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function accepted(body: string, extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-cfgmsg-'));
  const file = join(dir, 'good.yaml');
  try {
    writeFileSync(file, HEAD + body);
    const r = parseFlags(['--config', file, ...extra]);
    assert.equal(r.kind, 'run');
    if (r.kind !== 'run') throw new Error('not run');
    return r.config;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('config file: each supported field\'s bad value, in upstream\'s field.Error wording', () => {
  const DUAL = '(e.g. 10.100.0.0/16,fde4:8dba:82e1::/48)';
  const cases: [string, string][] = [
    ['mode: kernelspace\n', 'KubeProxyConfiguration.mode: Invalid value: "kernelspace": must be iptables, ipvs, nftables, userspace or blank (blank means the default proxy [currently userspace])'],
    ['clusterCIDR: 198.18.0.0/99\n', 'KubeProxyConfiguration.clusterCIDR: Invalid value: "198.18.0.0/99": must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48)'],
    ['clusterCIDR: 198.18.0.0/16,198.19.0.0/16\n', `KubeProxyConfiguration.clusterCIDR: Invalid value: "198.18.0.0/16,198.19.0.0/16": must be a valid DualStack CIDR ${DUAL}`],
    ['clusterCIDR: 198.18.0.0/16,fd00::/64,fd01::/64\n', `KubeProxyConfiguration.clusterCIDR: Invalid value: "198.18.0.0/16,fd00::/64,fd01::/64": only one CIDR allowed or a valid DualStack CIDR ${DUAL}`],
    ['bindAddress: localhost\n', 'KubeProxyConfiguration.bindAddress: Invalid value: "localhost": not a valid textual representation of an IP address'],
    ['healthzBindAddress: 0.0.0.0\n', 'KubeProxyConfiguration.healthzBindAddress: Invalid value: "0.0.0.0": must be IP:port'],
    ['healthzBindAddress: localhost:10256\n', 'KubeProxyConfiguration.healthzBindAddress: Invalid value: "localhost": must be a valid IP'],
    ['metricsBindAddress: 127.0.0.1:99999\n', 'KubeProxyConfiguration.metricsBindAddress: Invalid value: "99999": must be a valid port'],
    ['hostnameOverride: "  "\n', 'KubeProxyConfiguration.hostnameOverride: Invalid value: "  ": must not be empty'],
    ['hostnameOverride: 7\n', 'KubeProxyConfiguration.hostnameOverride: Invalid value: 7: must be of type string'],
    ['nodePortAddresses: [198.18.0.0/15, 198.18.0.1]\n', 'KubeProxyConfiguration.nodePortAddresses[1]: Invalid value: "198.18.0.1": must be a valid CIDR'],
    ['nodePortAddresses: [primary]\n', 'KubeProxyConfiguration.nodePortAddresses[0]: Forbidden: "primary" is not supported by kproxy; list the CIDRs of the node\'s addresses'],
    ['nodePortAddresses: 198.18.0.0/15\n', 'KubeProxyConfiguration.nodePortAddresses: Invalid value: "198.18.0.0/15": must be of type []string'],
    ['nodePortAddresses: [5]\n', 'KubeProxyConfiguration.nodePortAddresses[0]: Invalid value: 5: must be of type string'],
    ['udpIdleTimeout: 0s\n', 'KubeProxyConfiguration.udpIdleTimeout: Invalid value: 0s: must be greater than 0'],
    ['iptables:\n  syncPeriod: 30\n', 'KubeProxyConfiguration.iptables.syncPeriod: Invalid value: 30: must be a duration such as 30s, 1m0s or 250ms'],
    ['iptables:\n  minSyncPeriod: -1s\n', 'KubeProxyConfiguration.iptables.minSyncPeriod: Invalid value: -1s: must be greater than or equal to 0'],
    ['iptables:\n  syncPeriod: 1s\n  minSyncPeriod: 2s\n', 'KubeProxyConfiguration.iptables.syncPeriod: Invalid value: 1s: must be greater than or equal to KubeProxyConfiguration.iptables.minSyncPeriod'],
    ['iptables:\n  masqueradeBit: 32\n', 'KubeProxyConfiguration.iptables.masqueradeBit: Invalid value: 32: must be within the range [0, 31]'],
    ['iptables:\n  masqueradeBit: "14"\n', 'KubeProxyConfiguration.iptables.masqueradeBit: Invalid value: "14": must be of type int32'],
    ['iptables:\n  masqueradeAll: yes\n', 'KubeProxyConfiguration.iptables.masqueradeAll: Invalid value: "yes": must be of type bool'],
    ['iptables: 5\n', 'KubeProxyConfiguration.iptables: Invalid value: 5: must be of type object'],
    ['mode: nftables\nnftables:\n  syncPeriod: 0s\n  minSyncPeriod: 0s\n', 'KubeProxyConfiguration.nftables.syncPeriod: Invalid value: 0s: must be greater than 0'],
    ['mode: nftables\nnftables:\n  masqueradeBit: -1\n', 'KubeProxyConfiguration.nftables.masqueradeBit: Invalid value: -1: must be within the range [0, 31]'],
    ['mode: ipvs\nipvs:\n  syncPeriod: 1s\n  minSyncPeriod: 5s\n', 'KubeProxyConfiguration.ipvs.syncPeriod: Invalid value: 1s: must be greater than or equal to KubeProxyConfiguration.ipvs.minSyncPeriod'],
    ['mode: ipvs\nipvs:\n  minSyncPeriod: -2s\n', 'KubeProxyConfiguration.ipvs.minSyncPeriod: Invalid value: -2s: must be greater than or equal to 0'],
    ['ipvs:\n  scheduler: fifo\n', 'KubeProxyConfiguration.ipvs.scheduler: Unsupported value: "fifo": supported values: "rr", "wrr", "lc", "wlc", "sed", "nq", "dh", "sh", "lblc", "lblcr", "mh"'],
    ['ipvs:\n  strictARP: 1\n', 'KubeProxyConfiguration.ipvs.strictARP: Invalid value: 1: must be of type bool'],
    ['ipvs:\n  excludeCIDRs: [198.18.0.0/24, nope]\n', 'KubeProxyConfiguration.ipvs.excludeCIDRs[1]: Invalid value: "nope": must be a valid CIDR'],
    ['ipvs:\n  tcpTimeout: -5s\n', 'KubeProxyConfiguration.ipvs.tcpTimeout: Invalid value: -5s: must be greater than or equal to 0'],
    ['ipvs:\n  tcpFinTimeout: -1m\n', 'KubeProxyConfiguration.ipvs.tcpFinTimeout: Invalid value: -1m0s: must be greater than or equal to 0'],
    ['ipvs:\n  udpTimeout: later\n', 'KubeProxyConfiguration.ipvs.udpTimeout: Invalid value: "later": must be a duration such as 30s, 1m0s or 250ms'],
    ['conntrack:\n  maxPerCore: -1\n', 'KubeProxyConfiguration.conntrack.maxPerCore: Invalid value: -1: must be greater than or equal to 0'],
    ['conntrack:\n  min: 1.5\n', 'KubeProxyConfiguration.conntrack.min: Invalid value: 1.5: must be of type int32'],
    ['conntrack:\n  min: 3000000000\n', 'KubeProxyConfiguration.conntrack.min: Invalid value: 3000000000: must be of type int32'],
    ['conntrack:\n  tcpEstablishedTimeout: -1h\n', 'KubeProxyConfiguration.conntrack.tcpEstablishedTimeout: Invalid value: -1h0m0s: must be greater than or equal to 0'],
    ['conntrack:\n  tcpCloseWaitTimeout: -30m\n', 'KubeProxyConfiguration.conntrack.tcpCloseWaitTimeout: Invalid value: -30m0s: must be greater than or equal to 0'],
    ['conntrack:\n  tcpBeLiberal: "true"\n', 'KubeProxyConfiguration.conntrack.tcpBeLiberal: Invalid value: "true": must be of type bool'],
    ['conntrack:\n  udpTimeout: soon\n', 'KubeProxyConfiguration.conntrack.udpTimeout: Invalid value: "soon": must be a duration such as 30s, 1m0s or 250ms'],
    ['conntrack:\n  udpStreamTimeout: -250ms\n', 'KubeProxyConfiguration.conntrack.udpStreamTimeout: Invalid value: -250ms: must be greater than or equal to 0'],
    ['clientConnection:\n  kubeconfig: [a]\n', 'KubeProxyConfiguration.clientConnection.kubeconfig: Invalid value: ["a"]: must be of type string'],
  ];
  for (const [body, message] of cases) assert.equal(rejection(body), message, body);
});

test('config file: apiVersion and kind are required, with the one supported value', () => {
  assert.equal(rejection('kind: KubeProxyConfiguration\n', [], true),
    'KubeProxyConfiguration.apiVersion: Required value: must be kubeproxy.config.k8s.io/v1alpha1');
  assert.equal(rejection('apiVersion: kubeproxy.config.k8s.io/v1alpha2\nkind: KubeletConfiguration\n', [], true),
    '[KubeProxyConfiguration.apiVersion: Unsupported value: "kubeproxy.config.k8s.io/v1alpha2": supported values: "kubeproxy.config.k8s.io/v1alpha1", '
    + 'KubeProxyConfiguration.kind: Unsupported value: "KubeletConfiguration": supported values: "KubeProxyConfiguration"]');
  assert.equal(rejection('- mode: iptables\n', [], true), 'KubeProxyConfiguration: Invalid value: [{"mode":"iptables"}]: must be of type object');
});

test('config file: every error is reported at once, as upstream\'s aggregate "[e1, e2]"', () => {
  assert.equal(rejection('mode: ipvs\nbindAddress: nowhere\nipvs:\n  scheduler: fifo\n  tcpTimeout: -1s\nconntrack:\n  min: -1\n  udpTimeout: 5\n'), '['
    + 'KubeProxyConfiguration.conntrack.udpTimeout: Invalid value: 5: must be a duration such as 30s, 1m0s or 250ms, '
    + 'KubeProxyConfiguration.bindAddress: Invalid value: "nowhere": not a valid textual representation of an IP address, '
    + 'KubeProxyConfiguration.ipvs.scheduler: Unsupported value: "fifo": supported values: "rr", "wrr", "lc", "wlc", "sed", "nq", "dh", "sh", "lblc", "lblcr", "mh", '
    + 'KubeProxyConfiguration.ipvs.tcpTimeout: Invalid value: -1s: must be greater than or equal to 0, '
    + 'KubeProxyConfiguration.conntrack.min: Invalid value: -1: must be greater than or equal to 0]');
  // Upstream's checks on one field both apply (a zero sync period is also below the minimum).
  assert.equal(rejection('iptables:\n  syncPeriod: 0s\n'), '[KubeProxyConfiguration.iptables.syncPeriod: Invalid value: 0s: must be greater than 0, '
    + 'KubeProxyConfiguration.iptables.syncPeriod: Invalid value: 0s: must be greater than or equal to KubeProxyConfiguration.iptables.minSyncPeriod]');
  assert.equal(aggregate(['a', 'b', 'a']), '[a, b]', 'repeats are dropped, as ToAggregate does');
  assert.equal(aggregate(['a', 'a']), 'a');
});

test('config file: unknown fields are named by path, top level and nested, in one strict decoding error', () => {
  assert.equal(rejection('iptables:\n  syncPeriodd: 45s\n'), 'strict decoding error: unknown field "iptables.syncPeriodd"');
  assert.equal(rejection('modee: iptables\nconntrack:\n  maxPerCpu: 1\nnftables:\n  masqueradeBits: 3\n'),
    'strict decoding error: unknown field "modee", unknown field "conntrack.maxPerCpu", unknown field "nftables.masqueradeBits"');
  // With other problems, all together.
  assert.equal(rejection('foo: 1\nconntrack:\n  min: -1\n'),
    '[strict decoding error: unknown field "foo", KubeProxyConfiguration.conntrack.min: Invalid value: -1: must be greater than or equal to 0]');
});

test('config file: the merged configuration is what is validated; a flag\'s value says it came from the flag', () => {
  // A flag given on the command line replaces the file's value, bad or not.
  assert.equal(accepted('conntrack:\n  min: -1\n', ['--conntrack-min', '5']).conntrack.min, 5);
  assert.equal(rejection('conntrack:\n  min: 5\n', ['--conntrack-min', '-5']),
    'KubeProxyConfiguration.conntrack.min: Invalid value: -5: must be greater than or equal to 0 (from --conntrack-min)');
  // --iptables-sync-period sets the section of the mode the file chose.
  assert.equal(rejection('mode: nftables\nnftables:\n  minSyncPeriod: 10s\n', ['--iptables-sync-period', '5s']),
    'KubeProxyConfiguration.nftables.syncPeriod: Invalid value: 5s: must be greater than or equal to KubeProxyConfiguration.nftables.minSyncPeriod (from --iptables-sync-period)');
  // A section the mode does not use is not validated beyond its types (upstream validates ipvs only in ipvs mode).
  assert.equal(accepted('mode: iptables\nipvs:\n  syncPeriod: 0s\n').syncPeriodMs, 30_000);
  assert.equal(rejection('mode: iptables\nipvs:\n  syncPeriod: 0\n'), 'KubeProxyConfiguration.ipvs.syncPeriod: Invalid value: 0: must be a duration such as 30s, 1m0s or 250ms');
});

test('CLI: a bad --config file exits 2 with the whole message on one line and starts nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-cfgmsg-cli-'));
  try {
    const bad = join(dir, 'bad.yaml');
    const good = join(dir, 'good.yaml');
    const out = join(dir, 'written.yaml');
    writeFileSync(bad, `${HEAD}mode: iptables\niptables:\n  masqueradeBit: 32\nconntrack:\n  maxPerCore: -1\nfoo: bar\n`);
    writeFileSync(good, `${HEAD}mode: iptables\niptables:\n  masqueradeBit: 31\n`);
    const expected = `kproxy: invalid configuration (--config ${bad}): [strict decoding error: unknown field "foo", `
      + 'KubeProxyConfiguration.iptables.masqueradeBit: Invalid value: 32: must be within the range [0, 31], '
      + 'KubeProxyConfiguration.conntrack.maxPerCore: Invalid value: -1: must be greater than or equal to 0]\n';
    const args = ['--manifests', DEMO, '--healthz-bind-address', '', '--metrics-bind-address', ''];
    // Running: without the error it would keep serving; it exits at once, having logged nothing else.
    const run = spawnSync(process.execPath, [BIN, '--config', bad, '--proxy-mode', 'userspace', ...args], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.signal, null, 'exited by itself');
    assert.equal(run.status, 2);
    assert.equal(run.stderr, expected);
    assert.equal(run.stdout, '');
    // Dry run: no rule set is printed.
    const dry = spawnSync(process.execPath, [BIN, '--config', bad, '--dry-run', ...args], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(dry.status, 2);
    assert.equal(dry.stderr, expected);
    assert.equal(dry.stdout, '');
    // --write-config-to: nothing is written; the same command with a good file writes it.
    const write = spawnSync(process.execPath, [BIN, '--config', bad, '--write-config-to', out], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(write.status, 2);
    assert.equal(write.stderr, expected);
    assert.equal(existsSync(out), false);
    const control = spawnSync(process.execPath, [BIN, '--config', good, '--write-config-to', out], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(control.status, 0, control.stderr);
    assert.equal(existsSync(out), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
