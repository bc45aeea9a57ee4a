/** The IPVS support probe and the fallback decision, one missing piece at a time. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeIpvsSupport } from '../../../src/backends/ipvs/support.js';
import { effectiveMode } from '../../../src/cli/main.js';
import { parseFlags } from '../../../src/config/flags.js';
import { configToYAML } from '../../../src/config/file.js';
import { memoryLogger } from '../../../src/observability/log.js';
import { FakeExec } from '../../../src/platform/exec.js';

function machine(over: { proc?: boolean; modprobe?: 'ok' | 'fail' | 'absent'; ipvsadm?: boolean; restore?: boolean; ipset?: string | undefined } = {}) {
  const fake = new FakeExec();
  let proc = over.proc ?? true;
  const modprobe = over.modprobe ?? 'ok';
  fake.respond((c) => c.cmd === 'modprobe', modprobe === 'absent' ? { code: 127 } : modprobe === 'fail' ? { code: 1, stderr: 'modprobe: FATAL: Module ip_vs not found in directory /lib/modules/6.1\n' } : { code: 0 });
  if (over.ipvsadm === false) fake.respond((c) => c.cmd === 'ipvsadm', { code: 127 });
  if (over.restore === false) fake.respond((c) => c.cmd === 'ipvsadm-restore', { code: 127 });
  const ipset = 'ipset' in over ? over.ipset : 'ipset v7.17, protocol version: 7\n';
  fake.respond((c) => c.cmd === 'ipset', ipset === undefined ? { code: 127 } : { stdout: ipset });
  const exists = (p: string): boolean => {
    if (p !== '/proc/net/ip_vs') return false;
    if (!proc && modprobe === 'ok' && fake.calls.some((c) => c.cmd === 'modprobe')) proc = true;
    return proc;
  };
  return { fake, exists };
}

test('IPVS support: each missing piece is named, everything present is ok', async () => {
  const cases: [string, Parameters<typeof machine>[0], RegExp | undefined][] = [
    ['all present', {}, undefined],
    ['module loads on demand', { proc: false, modprobe: 'ok' }, undefined],
    ['no kernel IPVS', { proc: false, modprobe: 'fail' }, /^the kernel's IPVS \(no \/proc\/net\/ip_vs; modprobe ip_vs failed: modprobe: FATAL: Module ip_vs not found/],
    ['no modprobe', { proc: false, modprobe: 'absent' }, /^the kernel's IPVS \(no \/proc\/net\/ip_vs; modprobe not found\)$/],
    ['no ipvsadm', { ipvsadm: false }, /^the ipvsadm command$/],
    ['no ipset', { ipset: undefined }, /^the ipset command$/],
    ['old ipset', { ipset: 'ipset v5.4, protocol version: 5\n' }, /^ipset 6\.0 or newer \(found v5\.4\)$/],
  ];
  for (const [name, over, want] of cases) {
    const m = machine(over);
    const r = await probeIpvsSupport({ exec: m.fake.exec, exists: m.exists });
    if (want === undefined) assert.deepEqual(r, { ok: true }, name);
    else {
      assert.equal(r.ok, false, name);
      if (!r.ok) {
        assert.equal(r.missing.length, 1, `${name}: ${r.missing.join('; ')}`);
        assert.match(r.missing[0] ?? '', want, name);
      }
    }
  }
  const none = machine({ proc: false, modprobe: 'fail', ipvsadm: false, ipset: undefined });
  const r = await probeIpvsSupport({ exec: none.fake.exec, exists: none.exists });
  assert.equal(r.ok ? 0 : r.missing.length, 3, 'all missing pieces in one answer');
});

test('fallback: ipvs mode without support runs iptables with one log line; other modes never probe', async () => {
  const base = parseFlags(['--proxy-mode', 'ipvs', '--manifests', 'x.yaml', '--hostname-override', 'n1']);
  assert.equal(base.kind, 'run');
  if (base.kind !== 'run') return;
  const log = memoryLogger();
  let probes = 0;
  const missing = async () => {
    probes++;
    return { ok: false as const, missing: ['the ipvsadm command', 'the ipset command'] };
  };
  assert.equal(await effectiveMode(base.config, log, missing), 'iptables');
  assert.equal(log.lines.length, 1);
  assert.match(log.lines[0] ?? '', /IPVS proxy mode is not available, running iptables mode instead: missing the ipvsadm command; the ipset command/);
  assert.equal(await effectiveMode(base.config, log, async () => ({ ok: true })), 'ipvs');
  assert.equal(await effectiveMode({ ...base.config, mode: 'nftables' }, log, missing), 'nftables');
  assert.equal(probes, 1);
});

test('ipvs flags and config fields, with upstream names; ipvs periods apply in ipvs mode only', () => {
  const r = parseFlags(['--proxy-mode', 'ipvs', '--manifests', 'x', '--hostname-override', 'n', '--ipvs-scheduler', 'wlc', '--ipvs-sync-period', '10s',
    '--ipvs-min-sync-period', '0s', '--ipvs-strict-arp', '--ipvs-exclude-cidrs', '198.18.250.0/24,198.18.251.0/24', '--ipvs-tcp-timeout', '15m',
    '--ipvs-tcpfin-timeout', '2m', '--ipvs-udp-timeout', '30s']);
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  const c = r.config;
  assert.deepEqual([c.ipvsScheduler, c.syncPeriodMs, c.minSyncPeriodMs, c.ipvsStrictARP, c.ipvsExcludeCIDRs, c.ipvsTcpTimeoutMs, c.ipvsTcpFinTimeoutMs, c.ipvsUdpTimeoutMs],
    ['wlc', 10_000, 0, true, ['198.18.250.0/24', '198.18.251.0/24'], 900_000, 120_000, 30_000]);
  const ipt = parseFlags(['--proxy-mode', 'iptables', '--manifests', 'x', '--hostname-override', 'n', '--ipvs-sync-period', '10s']);
  assert.equal(ipt.kind === 'run' ? ipt.config.syncPeriodMs : 0, 30_000);
  assert.throws(() => parseFlags(['--ipvs-exclude-cidrs', '198.18.250.0/24,10.0.0.0/33']),
    { message: 'invalid configuration: KubeProxyConfiguration.ipvs.excludeCIDRs[1]: Invalid value: "10.0.0.0/33": must be a valid CIDR (from --ipvs-exclude-cidrs)' });
  // The written configuration loads back the same.
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-ipvs-cfg-'));
  const file = join(dir, 'c.yaml');
  writeFileSync(file, configToYAML(c));
  const back = parseFlags(['--config', file, '--manifests', 'x']);
  assert.equal(back.kind, 'run');
  if (back.kind !== 'run') return;
  assert.deepEqual([back.config.ipvsStrictARP, back.config.ipvsExcludeCIDRs, back.config.ipvsTcpTimeoutMs, back.config.ipvsTcpFinTimeoutMs, back.config.ipvsUdpTimeoutMs],
    [true, ['198.18.250.0/24', '198.18.251.0/24'], 900_000, 120_000, 30_000]);
  writeFileSync(file, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  syncPeriod: 7s\n  strictARP: "yes"\n');
  assert.throws(() => parseFlags(['--config', file, '--manifests', 'x']),
    { message: `invalid configuration (--config ${file}): KubeProxyConfiguration.ipvs.strictARP: Invalid value: "yes": must be of type bool` });
});
