/**
 * Runs a command inside a qemu VM that boots Debian's kernel (which has IPVS), for the tests
 * that need a real IPVS kernel: this machine's own kernel has neither IPVS nor dummy links.
 *
 * The guest runs the HOST's userland: /init (vm-build.ts) mounts the host root read-only over
 * virtio-9p under a tmpfs overlay, with fresh /tmp and /run, so the host's node, iproute2,
 * iptables, ipset, ipvsadm, conntrack and this checkout's dist/ run unchanged, as root, in
 * the guest's own kernel. Writes stay in the guest. A second 9p share (a fresh host temporary
 * directory, /run/kproxy-vm in the guest) carries the job script in and stdout, stderr and
 * the exit code out. Software emulation (TCG) only: nested KVM does not work here.
 *
 *   const r = await runInVm({ command: ['node', '--test', 'dist/x.guest.js'], timeoutMs: 300_000 });
 *
 * qemu is started by this process and always killed by its pid on timeout (and at exit; with
 * util-linux's setpriv it also dies with this process if that is killed).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRoot, kernelTestPolicy, runHost, type KernelTestDecision } from '../../src/platform/netns.js';
import { buildVm, findStaticBusybox, HOSTROOT_TAG, JOB_TAG, type VmImage } from './vm-build.js';

/** The repository root (this file is compiled to dist/test/helpers/). */
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');

/**
 * Modules the guest loads before the job runs (modprobe resolves their dependencies):
 * IPVS with every scheduler, conntrack/NAT, what iptables (nft and legacy backends), ipset
 * and nftables modes use, and the link types the tests create.
 */
export const GUEST_MODULES: readonly string[] = [
  'crc32c_generic', // before libcrc32c (ip_vs, nf_tables pull it in)
  'ip_vs', 'ip_vs_rr', 'ip_vs_wrr', 'ip_vs_lc', 'ip_vs_wlc', 'ip_vs_sed', 'ip_vs_nq', 'ip_vs_dh', 'ip_vs_sh',
  'ip_vs_lblc', 'ip_vs_lblcr', 'ip_vs_mh',
  'nf_conntrack', 'nf_conntrack_netlink', 'nf_nat',
  'nf_tables', 'nft_compat', 'nft_chain_nat', 'nft_ct', 'nft_nat', 'nft_masq', 'nft_redir', 'nft_reject_inet', 'nft_numgen', 'nft_hash',
  'ip_tables', 'iptable_nat', 'iptable_filter', 'iptable_mangle', 'iptable_raw',
  'ip6_tables', 'ip6table_nat', 'ip6table_filter', 'ip6table_mangle',
  'xt_statistic', 'xt_recent', 'xt_comment', 'xt_mark', 'xt_conntrack', 'xt_addrtype', 'xt_MASQUERADE', 'xt_nat',
  'xt_set', 'xt_multiport', 'xt_tcpudp', 'xt_physdev', 'xt_REDIRECT', 'xt_NFLOG', 'nf_reject_ipv4', 'ipt_REJECT', 'xt_ipvs',
  'ip_set', 'ip_set_hash_ip', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_hash_ipportnet', 'ip_set_hash_net',
  'ip_set_bitmap_port',
  'veth', 'bridge', 'br_netfilter', 'dummy', 'overlay',
];

/** Host tools building and booting the VM needs. */
export const VM_TOOLS: readonly string[] = ['qemu-system-x86_64', 'apt-get', 'apt-cache', 'dpkg-deb', 'depmod', 'modprobe', 'xz', 'find'];

export interface RunInVmOptions {
  /** argv of the command, run in the guest with cwd = `cwd` (default: this checkout). */
  readonly command: readonly string[];
  /** Extra environment (PATH as the host's, HOME, LANG, CI and KPROXY_IN_VM=1 are set already). */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** qemu is killed (by pid) after this long; default 10 minutes. */
  readonly timeoutMs?: number;
  /** Modules to load before the command runs; default GUEST_MODULES. */
  readonly modules?: readonly string[];
  /** Guest memory, MiB; default 1024 (TCG allocates lazily, unused memory costs nothing). */
  readonly memoryMb?: number;
  /** Guest CPUs; default 1. */
  readonly cpus?: number;
}

export interface VmResult {
  /** The command's exit code; 124 when qemu was killed on timeout; 125 when the guest never ran it. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The serial console (kernel messages, /init's errors) and qemu's own stderr. */
  readonly console: string;
  /** Wall time from starting qemu to its exit. */
  readonly durationMs: number;
  /** Guest uptime when the command started (boot, mounts, modprobe), ms; undefined if it never started. */
  readonly bootMs: number | undefined;
  /** Guest time the command took, ms. */
  readonly commandMs: number | undefined;
  /** Time spent finding (or building) the VM image before qemu started. */
  readonly buildMs: number;
  readonly image: VmImage;
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The job /init runs chrooted in the guest's view of the host root. */
export function jobScript(cwd: string, env: Readonly<Record<string, string>>, command: readonly string[]): string {
  if (command.length === 0) throw new Error('runInVm: command is empty');
  const lines = ['#!/bin/sh', `cd ${quote(cwd)} || exit 125`];
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`runInVm: bad environment variable name ${JSON.stringify(k)}`);
    lines.push(`export ${k}=${quote(v)}`);
  }
  lines.push(`exec ${command.map(quote).join(' ')}`);
  return `${lines.join('\n')}\n`;
}

/** qemu's arguments for an image and a job directory. */
export function qemuArgs(image: VmImage, jobDir: string, options: { memoryMb?: number; cpus?: number } = {}): string[] {
  const qboot = '/usr/share/qemu/qboot.rom';
  return [
    '-accel', 'tcg', '-cpu', 'qemu64', '-smp', String(options.cpus ?? 1), '-m', String(options.memoryMb ?? 1024),
    '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none', '-serial', 'stdio',
    ...(existsSync(qboot) ? ['-bios', qboot] : []),
    '-kernel', image.kernel, '-initrd', image.initramfs,
    '-append', 'console=ttyS0 quiet panic=-1 8250.nr_uarts=1 mitigations=off',
    '-fsdev', `local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap`,
    '-device', `virtio-9p-pci,fsdev=hostroot,mount_tag=${HOSTROOT_TAG}`,
    '-fsdev', `local,id=job,path=${jobDir},security_model=none`,
    '-device', `virtio-9p-pci,fsdev=job,mount_tag=${JOB_TAG}`,
  ];
}

// qemu processes this process started and that still run: killed (by pid) if we exit first.
const running = new Set<number>();
let exitHook = false;
function track(pid: number): void {
  running.add(pid);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const p of running) {
      try { process.kill(p, 'SIGKILL'); } catch { /* gone already */ }
    }
  });
}

let setprivKnown: boolean | undefined;
function hasSetpriv(): boolean {
  setprivKnown ??= spawnSync('setpriv', ['--help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig') === true;
  return setprivKnown;
}

const readOr = (path: string, fallback: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
};
const uptimeMs = (path: string): number | undefined => {
  const v = Number(readOr(path, '').split(/\s+/)[0]);
  return readOr(path, '') === '' || !Number.isFinite(v) ? undefined : Math.round(v * 1000);
};

/** Boots the VM, runs one command in it, returns its exit code and output. */
export async function runInVm(options: RunInVmOptions): Promise<VmResult> {
  const timeoutMs = options.timeoutMs ?? 600_000;
  const image = buildVm();
  const jobDir = mkdtempSync(join(tmpdir(), 'kproxy-vm-job-'));
  try {
    const env: Record<string, string> = {
      // The host's PATH (node may live outside /usr/bin, e.g. in CI), with the sbin directories.
      PATH: [...new Set([...(process.env['PATH'] ?? '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].filter((p) => p.startsWith('/')))].join(':'),
      HOME: '/root',
      LANG: 'C.UTF-8',
      KPROXY_IN_VM: '1',
      ...(process.env['CI'] !== undefined ? { CI: process.env['CI'] } : {}),
      ...options.env,
    };
    writeFileSync(join(jobDir, 'job.sh'), jobScript(options.cwd ?? REPO_ROOT, env, options.command), { mode: 0o755 });
    const modules = options.modules ?? GUEST_MODULES;
    for (const m of modules) if (!/^[A-Za-z0-9_-]+$/.test(m)) throw new Error(`runInVm: bad module name ${JSON.stringify(m)}`);
    writeFileSync(join(jobDir, 'vm.env'), `KVER=${quote(image.version)}\nMODDIR=${quote(image.modulesDir)}\nMODULES=${quote(modules.join(' '))}\n`);

    const t0 = Date.now();
    // setpriv --pdeathsig: qemu dies with this process even when it is killed outright (the
    // test runner cancelling a file), where no exit hook of ours runs.
    const args = qemuArgs(image, jobDir, options);
    const qemu = hasSetpriv()
      ? spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-system-x86_64', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let console = '';
    const append = (b: Buffer): void => {
      console += b.toString();
      if (console.length > 4 << 20) console = console.slice(-(2 << 20));
    };
    qemu.stdout.on('data', append);
    qemu.stderr.on('data', append);
    let timedOut = false;
    const exit = await new Promise<number | null>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      qemu.once('error', (e) => {
        append(Buffer.from(`qemu-system-x86_64: ${e.message}\n`));
        clearTimeout(timer);
        resolve(null);
      });
      if (qemu.pid === undefined) return;
      const pid = qemu.pid;
      track(pid);
      timer = setTimeout(() => {
        timedOut = true;
        try { process.kill(pid, 'SIGKILL'); } catch { /* exited meanwhile */ }
      }, timeoutMs);
      qemu.once('exit', (code) => {
        clearTimeout(timer);
        running.delete(pid);
        resolve(code);
      });
    });
    const durationMs = Date.now() - t0;
    const codeText = readOr(join(jobDir, 'exit-code'), '').trim();
    let code: number;
    if (codeText !== '') code = Number(codeText);
    else if (timedOut) code = 124;
    else code = 125;
    if (code === 125 && codeText === '') append(Buffer.from(`\n[kproxy-vm] the guest did not run the command (qemu exit ${exit ?? 'error'})\n`));
    if (timedOut) append(Buffer.from(`\n[kproxy-vm] qemu killed after ${timeoutMs} ms\n`));
    const started = uptimeMs(join(jobDir, 'started'));
    const finished = uptimeMs(join(jobDir, 'finished'));
    return {
      code,
      stdout: readOr(join(jobDir, 'stdout'), ''),
      stderr: readOr(join(jobDir, 'stderr'), '') + (readOr(join(jobDir, 'modprobe.log'), '')),
      console,
      durationMs,
      bootMs: started,
      commandMs: started !== undefined && finished !== undefined ? finished - started : undefined,
      buildMs: image.buildMs,
      image,
    };
  } finally {
    rmSync(jobDir, { recursive: true, force: true });
  }
}

/** Whether the VM can run here: root, and the tools building and booting it need. */
export async function vmAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (!isRoot()) return { ok: false, reason: 'not running as root' };
  const missing: string[] = [];
  for (const tool of VM_TOOLS) {
    const r = await runHost('sh', ['-c', 'command -v "$1"', 'sh', tool], { timeoutMs: 5000 });
    if (r.code !== 0) missing.push(tool);
  }
  try {
    findStaticBusybox();
  } catch {
    missing.push('busybox (static)');
  }
  if (missing.length > 0) return { ok: false, reason: `missing for the IPVS VM: ${missing.join(', ')} (apt-get install qemu-system-x86 busybox-static kmod xz-utils)` };
  return { ok: true };
}

export async function vmDecision(): Promise<KernelTestDecision> {
  return kernelTestPolicy({ root: isRoot(), ci: process.env['CI'], availability: await vmAvailable() });
}

/**
 * For node:test, as kernelTestGate: `if (!(await vmGate(t))) return;`. Skips only when not root
 * and CI is not 'true'; otherwise a VM that cannot run fails the test with the reason.
 */
export async function vmGate(t: { skip(message?: string): void }): Promise<boolean> {
  const d = await vmDecision();
  if (d.run) return true;
  if (d.skip) {
    t.skip(`VM test skipped: ${d.reason} (set CI=true to make this a failure)`);
    return false;
  }
  throw new Error(`VM test cannot run: ${d.reason}${process.env['CI'] === 'true' ? ' (CI=true: VM tests must run)' : ' (running as root: VM tests must run)'}`);
}
