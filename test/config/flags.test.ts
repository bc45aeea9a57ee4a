import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/config/config.js';
import { formatDuration, parseDuration } from '../../src/config/duration.js';
import { parseFlags } from '../../src/config/flags.js';

const BIN = fileURLToPath(new URL('../../../bin/kproxy.js', import.meta.url));

test('durations parse as Go prints them', () => {
  const cases: [string, number | undefined][] = [['30s', 30_000], ['1m30s', 90_000], ['250ms', 250], ['0', 0], ['0s', 0], ['1.5h', 5_400_000], ['10', undefined], ['s', undefined], ['5x', undefined], ['-1h', -3_600_000], ['+2s', 2000], ['-', undefined]];
  for (const [s, ms] of cases) assert.equal(parseDuration(s), ms, s);
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(250), '250ms');
  assert.equal(formatDuration(-3_600_000), '-1h0m0s', 'as Go prints a negative Duration');
});

test('flags: upstream defaults and names', () => {
  const r = parseFlags(['--manifests', 'x.yaml', '--hostname-override', 'Node-1']);
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.deepEqual(r.config.healthzBindAddress, { host: '0.0.0.0', port: 10256 });
  assert.deepEqual(r.config.metricsBindAddress, { host: '127.0.0.1', port: 10249 });
  assert.equal(r.config.syncPeriodMs, 30_000);
  assert.equal(r.config.minSyncPeriodMs, 1_000);
  assert.equal(r.config.ipvsScheduler, 'rr');
  assert.equal(r.config.hostnameOverride, 'node-1');
  const r2 = parseFlags(['--manifests', 'x', '--proxy-mode=userspace', '--ipvs-scheduler', 'sh', '--cluster-cidr', '198.18.0.0/16,fd00::/64',
    '--iptables-sync-period', '1m', '--iptables-min-sync-period', '0s', '--healthz-bind-address', '', '-v', '4', '--masquerade-all']);
  assert.equal(r2.kind, 'run');
  if (r2.kind !== 'run') return;
  assert.equal(r2.config.ipvsScheduler, 'sh');
  assert.deepEqual(r2.config.clusterCIDRs, ['198.18.0.0/16', 'fd00::/64']);
  assert.equal(r2.config.syncPeriodMs, 60_000);
  assert.equal(r2.config.minSyncPeriodMs, 0);
  assert.equal(r2.config.healthzBindAddress, undefined);
  assert.equal(r2.config.verbosity, 4);
  assert.equal(r2.config.masqueradeAll, true);
});

test('flags: bad values are ConfigErrors that name the field, the flag and the reason', () => {
  const cases: [string[], string][] = [
    // A flag's own syntax fails as it is parsed, naming the flag (upstream's pflag does the same).
    [['--iptables-sync-period', '10'], 'invalid value "10" for --iptables-sync-period: must be a duration such as 30s, 1m0s or 250ms'],
    [['--conntrack-min', 'lots'], 'invalid value "lots" for --conntrack-min: must be a 32-bit integer'],
    [['--conntrack-tcp-timeout-established', '24'], 'invalid value "24" for --conntrack-tcp-timeout-established: must be a duration such as 30s, 1m0s or 250ms'],
    [['--userspace-connect-timeout', '-1s'], 'invalid value "-1s" for --userspace-connect-timeout: must be greater than or equal to 0'],
    [['--no-such-flag'], 'unknown option --no-such-flag'],
    [['-v', 'loud'], 'invalid value "loud" for -v: must be a non-negative integer'],
    // Values are validated with the configuration, as the same field from a file would be.
    [['--proxy-mode', 'kernelspace'], 'invalid configuration: KubeProxyConfiguration.mode: Invalid value: "kernelspace": must be iptables, ipvs, nftables, userspace or blank (blank means the default proxy [currently userspace]) (from --proxy-mode)'],
    [['--ipvs-scheduler', 'fifo'], 'invalid configuration: KubeProxyConfiguration.ipvs.scheduler: Unsupported value: "fifo": supported values: "rr", "wrr", "lc", "wlc", "sed", "nq", "dh", "sh", "lblc", "lblcr", "mh" (from --ipvs-scheduler)'],
    [['--healthz-bind-address', 'localhost:10256'], 'invalid configuration: KubeProxyConfiguration.healthzBindAddress: Invalid value: "localhost": must be a valid IP (from --healthz-bind-address)'],
    [['--cluster-cidr', '198.18.0.0/99'], 'invalid configuration: KubeProxyConfiguration.clusterCIDR: Invalid value: "198.18.0.0/99": must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48) (from --cluster-cidr)'],
    [['--iptables-min-sync-period', '1m', '--iptables-sync-period', '30s'], 'invalid configuration: KubeProxyConfiguration.iptables.syncPeriod: Invalid value: 30s: must be greater than or equal to KubeProxyConfiguration.iptables.minSyncPeriod (from --iptables-sync-period)'],
    [['--conntrack-max-per-core', '-1'], 'invalid configuration: KubeProxyConfiguration.conntrack.maxPerCore: Invalid value: -1: must be greater than or equal to 0 (from --conntrack-max-per-core)'],
    [['--conntrack-udp-timeout', '-1s', '--bind-address', 'any'], 'invalid configuration: [KubeProxyConfiguration.bindAddress: Invalid value: "any": not a valid textual representation of an IP address (from --bind-address), KubeProxyConfiguration.conntrack.udpTimeout: Invalid value: -1s: must be greater than or equal to 0 (from --conntrack-udp-timeout)]'],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseFlags(argv), (err: unknown) => err instanceof ConfigError && err.message === message, argv.join(' '));
  }
});

test('config file: values apply, flags given on the command line win, unknown fields are named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-cfg-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: userspace\nclusterCIDR: 198.18.0.0/16\niptables:\n  syncPeriod: 45s\n  minSyncPeriod: 2s\nipvs:\n  scheduler: lc\n');
  const r = parseFlags(['--config', file, '--iptables-min-sync-period', '0s']);
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.equal(r.config.syncPeriodMs, 45_000);
  assert.equal(r.config.minSyncPeriodMs, 0);
  assert.equal(r.config.ipvsScheduler, 'lc');
  assert.deepEqual(r.config.clusterCIDRs, ['198.18.0.0/16']);
  writeFileSync(file, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n  syncPeriodd: 45s\n');
  assert.throws(() => parseFlags(['--config', file]), { message: `invalid configuration (--config ${file}): strict decoding error: unknown field "iptables.syncPeriodd"` });
});

test('config file: conntrack settings and the nftables section (mode nftables), with upstream\'s defaults and messages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-cfg-'));
  const file = join(dir, 'config.yaml');
  const head = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';
  const load = (body: string) => {
    writeFileSync(file, head + body);
    const r = parseFlags(['--config', file]);
    assert.equal(r.kind, 'run');
    if (r.kind !== 'run') throw new Error('not run');
    return r.config;
  };
  const d = load('');
  assert.deepEqual(d.conntrack, {
    maxPerCore: 32768, min: 131072, tcpEstablishedTimeoutMs: 86_400_000, tcpCloseWaitTimeoutMs: 3_600_000,
    tcpBeLiberal: false, udpTimeoutMs: 0, udpStreamTimeoutMs: 0,
  });
  const c = load('conntrack:\n  maxPerCore: 0\n  min: 1000\n  tcpEstablishedTimeout: 2h\n  tcpCloseWaitTimeout: 30m\n  tcpBeLiberal: true\n  udpTimeout: 30s\n  udpStreamTimeout: 2m\n');
  assert.deepEqual(c.conntrack, { maxPerCore: 0, min: 1000, tcpEstablishedTimeoutMs: 7_200_000, tcpCloseWaitTimeoutMs: 1_800_000, tcpBeLiberal: true, udpTimeoutMs: 30_000, udpStreamTimeoutMs: 120_000 });
  // A flag wins over the file, field by field.
  writeFileSync(file, head + 'conntrack:\n  maxPerCore: 0\n  min: 1000\n');
  const f = parseFlags(['--config', file, '--conntrack-min', '5']);
  assert.ok(f.kind === 'run' && f.config.conntrack.min === 5 && f.config.conntrack.maxPerCore === 0);
  // mode nftables: the nftables section's periods and masquerading, not the iptables one's.
  const n = load('mode: nftables\niptables:\n  syncPeriod: 10s\nnftables:\n  syncPeriod: 40s\n  minSyncPeriod: 3s\n  masqueradeAll: true\n  masqueradeBit: 12\n');
  assert.deepEqual([n.mode, n.syncPeriodMs, n.minSyncPeriodMs, n.masqueradeAll, n.masqueradeBit], ['nftables', 40_000, 3_000, true, 12]);
  const i = load('mode: iptables\niptables:\n  syncPeriod: 10s\nnftables:\n  syncPeriod: 40s\n');
  assert.equal(i.syncPeriodMs, 10_000);
  // Each field's bad values, word for word, are in file.test.ts.
});

test('CLI: bad flags exit 2 with one line; --help exits 0 and describes every flag', () => {
  const bad = spawnSync(process.execPath, [BIN, '--proxy-mode', 'bogus'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, /^kproxy: invalid configuration: KubeProxyConfiguration\.mode: Invalid value: "bogus": .* \(from --proxy-mode\)\n$/);
  const unknown = spawnSync(process.execPath, [BIN, '--frobnicate'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^kproxy: unknown option --frobnicate\n$/);
  const nosrc = spawnSync(process.execPath, [BIN, '--healthz-bind-address', '', '--metrics-bind-address', ''], { encoding: 'utf8' });
  assert.equal(nosrc.status, 1, 'no manifests and no cluster configuration: upstream falls back to in-cluster, which is not there');
  assert.match(nosrc.stderr, /neither --kubeconfig nor --master was given, and this is not running in a cluster/);
  const help = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  for (const flag of ['--proxy-mode', '--manifests', '--kubeconfig', '--master', '--config', '--hostname-override', '--bind-address',
    '--healthz-bind-address', '--metrics-bind-address', '--ipvs-scheduler', '--cluster-cidr', '--nodeport-addresses', '--masquerade-all',
    '--iptables-sync-period', '--iptables-min-sync-period', '--cleanup', '--dry-run', '-v']) {
    assert.ok(help.stdout.includes(flag), `help mentions ${flag}`);
  }
});

test('--write-config-to writes the effective configuration, which loads back to the same configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-wc-'));
  const out = join(dir, 'written.yaml');
  const args = ['--proxy-mode', 'iptables', '--cluster-cidr', '198.18.0.0/16', '--iptables-sync-period', '1m30s', '--ipvs-scheduler', 'wlc',
    '--hostname-override', 'node-7', '--metrics-bind-address', '0.0.0.0:10249', '--masquerade-all',
    '--conntrack-max-per-core', '0', '--conntrack-tcp-timeout-close-wait', '1h1m', '--conntrack-udp-timeout', '45s', '--conntrack-tcp-be-liberal'];
  const r = spawnSync(process.execPath, [BIN, ...args, '--write-config-to', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const direct = parseFlags(args);
  const loaded = parseFlags(['--config', out]);
  assert.equal(direct.kind, 'run');
  assert.equal(loaded.kind, 'run');
  if (direct.kind !== 'run' || loaded.kind !== 'run') return;
  assert.deepEqual(loaded.config, direct.config);
});
