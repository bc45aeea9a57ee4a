/**
 * Upstream's conntrack setup: which sysctls a configuration writes (unit, with a recording
 * sysctl), and the real thing inside a network namespace, where the timeouts are per namespace
 * and nf_conntrack_max cannot be raised above the node's. The root namespace's sysctls are only read, never written,
 * and the /sys hash size is never touched here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KproxyError } from '../../src/core/errors.js';
import { DEFAULTS } from '../../src/config/config.js';
import { applyConntrackSettings, conntrackMax, type ConntrackSettings, type HashSize } from '../../src/platform/conntrack-settings.js';
import { cleanupStaleNetns, createNetns, kernelTestGate, runHost, type Netns } from '../../src/platform/netns.js';
import { execSysctl, type Sysctl } from '../../src/platform/sysctl.js';

const NF = 'net.netfilter.';

class MemorySysctl implements Sysctl {
  readonly writes: string[] = [];
  constructor(readonly values: Map<string, number>, private readonly readOnly = new Set<string>()) {}
  get(key: string): Promise<number> {
    const v = this.values.get(key);
    return v === undefined ? Promise.reject(new Error(`sysctl: cannot stat /proc/sys/${key.replace(/\./g, '/')}: No such file or directory`)) : Promise.resolve(v);
  }
  set(key: string, value: number): Promise<void> {
    if (this.readOnly.has(key)) return Promise.reject(new Error(`sysctl: permission denied on key "${key}"`));
    this.writes.push(`${key}=${value}`);
    this.values.set(key, value);
    return Promise.resolve();
  }
}

function kernelDefaults(): Map<string, number> {
  return new Map([
    [`${NF}nf_conntrack_max`, 65536], [`${NF}nf_conntrack_tcp_timeout_established`, 432000], [`${NF}nf_conntrack_tcp_timeout_close_wait`, 60],
    [`${NF}nf_conntrack_tcp_be_liberal`, 0], [`${NF}nf_conntrack_udp_timeout`, 30], [`${NF}nf_conntrack_udp_timeout_stream`, 120],
  ]);
}

function settings(over: Partial<ConntrackSettings> = {}): ConntrackSettings {
  return { ...DEFAULTS.conntrack, ...over };
}

function deps(sysctl: Sysctl, cpus: number, hashSize?: HashSize) {
  const warnings: string[] = [];
  return {
    warnings,
    d: { sysctl, cpus, ...(hashSize ? { hashSize } : {}), warn: (r: string, m: string) => { warnings.push(`${r}: ${m}`); }, info: () => undefined },
  };
}

test('conntrackMax: max(maxPerCore × CPUs, min); maxPerCore 0 leaves it alone', () => {
  assert.equal(conntrackMax({ maxPerCore: 32768, min: 131072 }, 2), 131072);
  assert.equal(conntrackMax({ maxPerCore: 32768, min: 131072 }, 8), 262144);
  assert.equal(conntrackMax({ maxPerCore: 32768, min: 0 }, 1), 32768);
  assert.equal(conntrackMax({ maxPerCore: 0, min: 131072 }, 64), 0);
});

test('defaults write max, the established and close-wait timeouts; UDP and be_liberal stay the kernel\'s', async () => {
  const s = new MemorySysctl(kernelDefaults());
  const { d, warnings } = deps(s, 2);
  const changed = await applyConntrackSettings(settings(), d);
  assert.deepEqual(s.writes, [`${NF}nf_conntrack_max=131072`, `${NF}nf_conntrack_tcp_timeout_established=86400`, `${NF}nf_conntrack_tcp_timeout_close_wait=3600`]);
  assert.deepEqual(changed, s.writes.map((w) => w.split('=')[0]));
  assert.deepEqual(warnings, []);
  // Run again: nothing differs, nothing is written.
  s.writes.length = 0;
  assert.deepEqual(await applyConntrackSettings(settings(), d), []);
  assert.deepEqual(s.writes, []);
});

test('every setting, with zeros meaning "leave as is"', async () => {
  const s = new MemorySysctl(kernelDefaults());
  await applyConntrackSettings(settings({ maxPerCore: 0, tcpEstablishedTimeoutMs: 0, tcpCloseWaitTimeoutMs: 0, tcpBeLiberal: true, udpTimeoutMs: 45_000, udpStreamTimeoutMs: 150_500 }), deps(s, 4).d);
  assert.deepEqual(s.writes, [`${NF}nf_conntrack_tcp_be_liberal=1`, `${NF}nf_conntrack_udp_timeout=45`, `${NF}nf_conntrack_udp_timeout_stream=150`]);
});

test('the hash size follows a raised maximum (max/4) only when smaller; read-only /sys is a warning', async () => {
  const sizes: number[] = [];
  let current = 16384;
  let readOnly = false;
  const hash: HashSize = {
    get: () => Promise.resolve(current),
    set: (v) => {
      if (readOnly) return Promise.reject(Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' }));
      sizes.push(v);
      current = v;
      return Promise.resolve();
    },
  };
  const s = new MemorySysctl(kernelDefaults());
  await applyConntrackSettings(settings({ tcpEstablishedTimeoutMs: 0, tcpCloseWaitTimeoutMs: 0 }), deps(s, 2, hash).d);
  assert.deepEqual(sizes, [32768], '131072 / 4');
  s.values.set(`${NF}nf_conntrack_max`, 1);
  await applyConntrackSettings(settings({ tcpEstablishedTimeoutMs: 0, tcpCloseWaitTimeoutMs: 0 }), deps(s, 2, hash).d);
  assert.deepEqual(sizes, [32768], 'already big enough: not written again');
  readOnly = true;
  current = 1024;
  s.values.set(`${NF}nf_conntrack_max`, 1);
  const { d, warnings } = deps(s, 2, hash);
  await applyConntrackSettings(settings({ tcpEstablishedTimeoutMs: 0, tcpCloseWaitTimeoutMs: 0 }), d);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /^ReadOnlySysFS: .*\/sys is read-only: cannot modify conntrack limits/);
});

test('a sysctl that cannot be written stops the setup with the key, value and reason', async () => {
  const s = new MemorySysctl(kernelDefaults(), new Set([`${NF}nf_conntrack_max`]));
  await assert.rejects(applyConntrackSettings(settings(), deps(s, 2).d), (err: unknown) =>
    err instanceof KproxyError && err.code === 'KP_ERR_CONNTRACK_SETUP'
    && /net\.netfilter\.nf_conntrack_max=131072: sysctl: permission denied/.test(err.message) && /maxPerCore to 0/.test(err.message));
  assert.deepEqual(s.writes, [], 'nothing after the failed one was written');
});

test('in a network namespace: timeouts are set per namespace through the sysctl tool; nf_conntrack_max cannot be raised there', async (t) => {
  if (!(await kernelTestGate(t, { tools: ['sysctl'] }))) return;
  await cleanupStaleNetns('ct-sysctl');
  const keys = ['nf_conntrack_tcp_timeout_established', 'nf_conntrack_tcp_timeout_close_wait', 'nf_conntrack_udp_timeout', 'nf_conntrack_udp_timeout_stream', 'nf_conntrack_tcp_be_liberal', 'nf_conntrack_max'].map((k) => NF + k);
  const root = execSysctl((cmd, args) => runHost(cmd, args));
  await runHost('modprobe', ['nf_conntrack']);
  const rootBefore = await Promise.all(keys.map((k) => root.get(k)));
  let ns: Netns | undefined;
  try {
    ns = await createNetns('ct-sysctl');
    const n = ns;
    const sysctl = execSysctl((cmd, args) => n.exec(cmd, args));
    const want = settings({ maxPerCore: 0, tcpEstablishedTimeoutMs: 7_200_000, tcpCloseWaitTimeoutMs: 1_800_000, tcpBeLiberal: true, udpTimeoutMs: 33_000, udpStreamTimeoutMs: 99_000 });
    const changed = await applyConntrackSettings(want, deps(sysctl, 2).d);
    assert.equal(changed.length, 5);
    assert.deepEqual(await Promise.all(keys.slice(0, 5).map((k) => sysctl.get(k))), [7200, 1800, 33, 99, 1]);
    const max = await sysctl.get(`${NF}nf_conntrack_max`);
    await assert.rejects(applyConntrackSettings(settings({ maxPerCore: 1, min: max + 1 }), deps(sysctl, 2).d), (err: unknown) =>
      err instanceof KproxyError && new RegExp(`nf_conntrack_max=${max + 1}: cannot set sysctl`).test(err.message) && /kind does/.test(err.message));
    assert.equal(await sysctl.get(`${NF}nf_conntrack_max`), max);
  } finally {
    await ns?.destroy();
  }
  assert.deepEqual(await Promise.all(keys.map((k) => root.get(k))), rootBefore, 'the root namespace\'s conntrack sysctls are unchanged');
});
