/**
 * A harness for kernel-level tests: throw-away network namespaces, veth links between them,
 * processes started inside them, and the rules for when such tests may be skipped.
 *
 * Safety is built in, not left to callers: every namespace is named `kp-<prefix>-<pid>-<n>`
 * and removed by `destroy()` (and, as a last resort, when the process exits); links are
 * created inside a namespace (`ip -n NS link add`), never in the root namespace; addresses
 * and routes given to the helpers must lie in 198.18.0.0/15, the benchmarking range; every
 * command runs with a time bound; only processes this harness started (and processes living
 * inside its own namespaces) are ever killed, always by pid.
 *
 * Every `Netns.exec` has the shape of `Exec` (platform/exec.ts), so a backend constructed with
 * `exec: ns.exec` programs the kernel of that namespace instead of the host's.
 */
import { spawn as spawnChild, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { parseCIDR, parseIPv4 } from '../core/ip.js';
import { runTool, type ExecOptions, type ExecResult } from './exec.js';

export type { ExecResult } from './exec.js';

export interface NetnsExecOptions extends ExecOptions {
  /** Kill the command (SIGKILL, by pid) after this long; default 30 s. The result has code 124. */
  readonly timeoutMs?: number;
}

export interface NetnsSpawnOptions {
  /** Extra environment variables for the child. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory. */
  readonly cwd?: string;
}

export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A long-running process inside a namespace; its namespace's destroy() kills it. */
export interface NetnsProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** True until the process has exited. */
  readonly running: boolean;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** Everything written so far (the last 1 MiB of each stream). */
  stdout(): string;
  stderr(): string;
  /** Sends a signal by pid; false if the process has already exited. */
  kill(signal?: NodeJS.Signals): boolean;
  /** Sends `signal` (default SIGTERM), waits up to timeoutMs, then SIGKILLs. */
  stop(options?: { signal?: NodeJS.Signals; timeoutMs?: number }): Promise<ProcessExit>;
  /** Waits until stdout+stderr match `pattern`; rejects on timeout or if the process exits first. */
  waitForOutput(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
}

export interface Netns {
  /** The namespace name, as `ip netns list` shows it. */
  readonly name: string;
  readonly destroyed: boolean;
  /**
   * Runs `ip netns exec NAME cmd args...` (an `Exec`: usable as a backend's exec). Never rejects:
   * 127 when the command does not exist, 124 on timeout, 125 once the namespace is destroyed.
   */
  exec(cmd: string, args: readonly string[], options?: NetnsExecOptions): Promise<ExecResult>;
  /** As exec, but rejects with the command and its stderr when the exit code is not 0. */
  execOk(cmd: string, args: readonly string[], options?: NetnsExecOptions): Promise<ExecResult>;
  /** Starts a long-running child inside the namespace, tracked so destroy() kills it. */
  spawn(cmd: string, args: readonly string[], options?: NetnsSpawnOptions): NetnsProcess;
  /** Adds a route inside the namespace. dst and via must be in 198.18.0.0/15. */
  addRoute(dst: string, options: { via?: string; dev?: string }): Promise<void>;
  /** Sets a sysctl inside the namespace (only net.* keys, which are per namespace). */
  sysctl(key: string, value: string): Promise<void>;
  /** Kills tracked children (and any other process inside), then `ip netns del`. Idempotent. */
  destroy(): Promise<void>;
}

export interface VethEnd {
  readonly ns: Netns;
  /** Interface name inside ns. */
  readonly ifname: string;
  /** Address with prefix length, e.g. 198.18.1.1/24. */
  readonly cidr: string;
  /** The address alone. */
  readonly ip: string;
}

export interface VethLink {
  readonly a: VethEnd;
  readonly b: VethEnd;
}

export interface LinkOptions {
  /** Address/prefix for A's end, in 198.18.0.0/15 (e.g. 198.18.1.1/24). */
  readonly aCidr: string;
  readonly bCidr: string;
  /** Interface names (at most 15 characters); default `veth<n>a`/`veth<n>b`. */
  readonly aIfname?: string;
  readonly bIfname?: string;
}

export const TEST_RANGE = '198.18.0.0/15';
const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
const OUTPUT_LIMIT = 1 << 20;
const NAME_PREFIX = 'kp';

const testRange = parseCIDR(TEST_RANGE);

/** Throws unless `addr` (an address or CIDR, IPv4) lies entirely inside 198.18.0.0/15. */
export function assertTestAddress(addr: string): void {
  const ip = addr.split('/')[0] ?? '';
  const bits = addr.includes('/') ? Number(addr.split('/')[1]) : 32;
  const ok = parseIPv4(ip) !== undefined && Number.isInteger(bits) && bits >= 15 && bits <= 32 && testRange?.contains(ip) === true;
  if (!ok) throw new Error(`netns harness: ${JSON.stringify(addr)} is outside ${TEST_RANGE}; kernel tests may only use the benchmarking range`);
}

function checkPrefix(prefix: string): void {
  if (!/^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(prefix) || prefix.length > 24) {
    throw new Error(`netns harness: prefix ${JSON.stringify(prefix)} must be lowercase letters, digits and single dashes (at most 24 characters)`);
  }
}

function checkIfname(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new Error(`netns harness: interface name ${JSON.stringify(name)} must be 1-15 characters [A-Za-z0-9_.-]`);
}

/** Runs a command on the host (only `ip netns ...` and read-only tools are run this way). */
export function runHost(cmd: string, args: readonly string[], options: NetnsExecOptions = {}): Promise<ExecResult> {
  return runTool(cmd, args, { ...options, timeoutMs: options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS });
}

function failureText(cmd: string, args: readonly string[], r: ExecResult): string {
  return `${[cmd, ...args].join(' ')} failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).slice(0, 2000)}`;
}

function killPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    // A zombie (exited, not yet reaped) is dead for our purposes.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Names of all network namespaces `ip netns list` shows. */
export async function listNetns(): Promise<string[]> {
  const r = await runHost('ip', ['netns', 'list']);
  if (r.code !== 0) throw new Error(failureText('ip', ['netns', 'list'], r));
  return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n !== '');
}

/** Pids of the processes inside a namespace (`ip netns pids`). */
async function pidsIn(name: string): Promise<number[]> {
  const r = await runHost('ip', ['netns', 'pids', name], { timeoutMs: 10_000 });
  if (r.code !== 0) return [];
  return r.stdout.split('\n').map((l) => Number(l.trim())).filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid);
}

/** Kills every process inside the namespace (all started by tests) and deletes it. */
async function removeNamespace(name: string): Promise<void> {
  for (let round = 0; round < 20; round++) {
    const pids = await pidsIn(name);
    if (pids.length === 0) break;
    for (const pid of pids) killPid(pid, 'SIGKILL');
    await sleep(50);
  }
  const r = await runHost('ip', ['netns', 'del', name], { timeoutMs: 10_000 });
  if (r.code !== 0 && (await listNetns()).includes(name)) throw new Error(failureText('ip', ['netns', 'del', name], r));
}

// Namespaces and children of this process that are still alive: the exit hook's last resort.
const live = new Map<string, Set<NetnsProcess>>();
let exitHookInstalled = false;
let counter = 0;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [name, children] of live) {
      for (const c of children) if (c.running) killPid(c.pid, 'SIGKILL');
      const pids = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: 5000 });
      for (const l of (pids.stdout ?? '').split('\n')) {
        const pid = Number(l.trim());
        if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) killPid(pid, 'SIGKILL');
      }
      spawnSync('ip', ['netns', 'del', name], { timeout: 5000 });
    }
    live.clear();
  });
}

function trackProcess(child: ChildProcess, label: string): NetnsProcess {
  const pid = child.pid;
  if (pid === undefined) throw new Error(`netns harness: could not start ${label}`);
  let out = '';
  let err = '';
  let running = true;
  const listeners = new Set<() => void>();
  const append = (cur: string, b: Buffer): string => {
    const s = cur + b.toString();
    return s.length > OUTPUT_LIMIT ? s.slice(s.length - OUTPUT_LIMIT) : s;
  };
  child.stdout?.on('data', (b: Buffer) => { out = append(out, b); for (const l of listeners) l(); });
  child.stderr?.on('data', (b: Buffer) => { err = append(err, b); for (const l of listeners) l(); });
  child.stdin?.on('error', () => undefined);
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('error', () => {
      running = false;
      resolve({ code: 127, signal: null });
    });
    child.once('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
      for (const l of listeners) l();
    });
  });
  const proc: NetnsProcess = {
    pid,
    child,
    get running() { return running; },
    exited,
    stdout: () => out,
    stderr: () => err,
    kill: (signal = 'SIGTERM') => running && killPid(pid, signal),
    async stop(options = {}) {
      if (!running) return exited;
      killPid(pid, options.signal ?? 'SIGTERM');
      const timeoutMs = options.timeoutMs ?? 5000;
      const timer = new Promise<'timeout'>((r) => { const t = setTimeout(() => r('timeout'), timeoutMs); t.unref(); });
      if ((await Promise.race([exited, timer])) === 'timeout') killPid(pid, 'SIGKILL');
      return exited;
    },
    waitForOutput(pattern, timeoutMs = 10_000) {
      const matches = (): string | undefined => {
        const all = out + err;
        if (typeof pattern === 'string') return all.includes(pattern) ? pattern : undefined;
        return pattern.exec(all)?.[0];
      };
      return new Promise((resolve, reject) => {
        const done = (fn: () => void): void => {
          clearTimeout(timer);
          listeners.delete(check);
          fn();
        };
        const check = (): void => {
          const m = matches();
          if (m !== undefined) return done(() => resolve(m));
          if (!running) done(() => reject(new Error(`${label} exited before printing ${String(pattern)}; output:\n${(out + err).slice(-4000)}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`${label} did not print ${String(pattern)} within ${timeoutMs}ms; output:\n${(out + err).slice(-4000)}`))), timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
  return proc;
}

/**
 * Creates `kp-<prefix>-<pid>-<n>` with `lo` up inside. The caller must `destroy()` it (in a
 * `finally`/`after`); if the process exits first, an exit hook deletes it.
 */
export async function createNetns(prefix: string): Promise<Netns> {
  checkPrefix(prefix);
  installExitHook();
  const name = `${NAME_PREFIX}-${prefix}-${process.pid}-${++counter}`;
  const add = await runHost('ip', ['netns', 'add', name], { timeoutMs: 10_000 });
  if (add.code !== 0) throw new Error(failureText('ip', ['netns', 'add', name], add));
  const children = new Set<NetnsProcess>();
  live.set(name, children);
  let destroying: Promise<void> | undefined;

  const exec = (cmd: string, args: readonly string[], options: NetnsExecOptions = {}): Promise<ExecResult> => {
    if (destroying) return Promise.resolve({ code: 125, stdout: '', stderr: `netns ${name} is destroyed` });
    return runHost('ip', ['netns', 'exec', name, cmd, ...args], options);
  };
  const execOk = async (cmd: string, args: readonly string[], options: NetnsExecOptions = {}): Promise<ExecResult> => {
    const r = await exec(cmd, args, options);
    if (r.code !== 0) throw new Error(`[netns ${name}] ${failureText(cmd, args, r)}`);
    return r;
  };

  const ns: Netns = {
    name,
    get destroyed() { return destroying !== undefined; },
    exec,
    execOk,
    spawn(cmd, args, options = {}) {
      if (destroying) throw new Error(`netns harness: ${name} is destroyed`);
      // `ip netns exec` execs the command in place, so the child's pid is the command's pid.
      const child = spawnChild('ip', ['netns', 'exec', name, cmd, ...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        ...(options.env !== undefined ? { env: { ...process.env, ...options.env } } : {}),
      });
      const proc = trackProcess(child, `[netns ${name}] ${cmd} ${args.join(' ')}`);
      children.add(proc);
      void proc.exited.then(() => children.delete(proc));
      return proc;
    },
    async addRoute(dst, options) {
      assertTestAddress(dst);
      if (options.via !== undefined) assertTestAddress(options.via);
      if (options.dev !== undefined) checkIfname(options.dev);
      const args = ['-n', name, 'route', 'add', dst];
      if (options.via !== undefined) args.push('via', options.via);
      if (options.dev !== undefined) args.push('dev', options.dev);
      const r = await runHost('ip', args);
      if (r.code !== 0) throw new Error(failureText('ip', args, r));
    },
    async sysctl(key, value) {
      if (!/^net\.[A-Za-z0-9_.\/-]+$/.test(key)) throw new Error(`netns harness: only net.* sysctls are per namespace; refusing ${key}`);
      await execOk('sysctl', ['-q', '-w', `${key}=${value}`]);
    },
    destroy() {
      destroying ??= (async () => {
        await Promise.all([...children].map((c) => c.stop({ signal: 'SIGKILL', timeoutMs: 5000 })));
        await removeNamespace(name);
        live.delete(name);
      })();
      return destroying;
    },
  };

  try {
    await execOk('ip', ['link', 'set', 'lo', 'up']);
  } catch (err) {
    await ns.destroy();
    throw err;
  }
  return ns;
}

let linkCounter = 0;

/**
 * Links two namespaces with a veth pair created inside A and moved to B (never in the root
 * namespace), assigns the addresses and brings both ends up.
 */
export async function linkNetns(a: Netns, b: Netns, options: LinkOptions): Promise<VethLink> {
  assertTestAddress(options.aCidr);
  assertTestAddress(options.bCidr);
  if (!options.aCidr.includes('/') || !options.bCidr.includes('/')) throw new Error('netns harness: give addresses with a prefix length, e.g. 198.18.1.1/24');
  const n = ++linkCounter;
  const aIf = options.aIfname ?? `veth${n}a`;
  const bIf = options.bIfname ?? `veth${n}b`;
  checkIfname(aIf);
  checkIfname(bIf);
  const steps: (readonly string[])[] = [
    ['-n', a.name, 'link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name],
    ['-n', a.name, 'addr', 'add', options.aCidr, 'dev', aIf],
    ['-n', b.name, 'addr', 'add', options.bCidr, 'dev', bIf],
    ['-n', a.name, 'link', 'set', aIf, 'up'],
    ['-n', b.name, 'link', 'set', bIf, 'up'],
  ];
  for (const args of steps) {
    const r = await runHost('ip', args);
    if (r.code !== 0) throw new Error(failureText('ip', args, r));
  }
  const ipOf = (c: string): string => c.split('/')[0] ?? c;
  return {
    a: { ns: a, ifname: aIf, cidr: options.aCidr, ip: ipOf(options.aCidr) },
    b: { ns: b, ifname: bIf, cidr: options.bCidr, ip: ipOf(options.bCidr) },
  };
}

/**
 * Removes namespaces named `kp-<prefix>-<pid>-<n>` whose creating process is gone (crashed or
 * killed runs), killing the processes left inside them. Namespaces of live processes, which
 * may be tests running in parallel, are left alone. Returns the names removed.
 */
export async function cleanupStaleNetns(prefix: string): Promise<string[]> {
  checkPrefix(prefix);
  const re = new RegExp(`^${NAME_PREFIX}-${prefix.replace(/-/g, '\\-')}-(\\d+)-(\\d+)$`);
  const removed: string[] = [];
  for (const name of await listNetns()) {
    const m = re.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const ours = pid === process.pid;
    if (ours ? live.has(name) : pidAlive(pid)) continue;
    await removeNamespace(name);
    removed.push(name);
  }
  return removed;
}

/**
 * Whether the kernel is still tearing down a deleted network namespace: `ip netns del` returns at
 * once and the kernel's `netns` workqueue cleans up afterwards, which for a namespace holding a
 * big ruleset takes minutes (at 30,000 services: every `-m recent` table and every nf_tables set
 * is unlinked from a list walked by name) and holds locks the next namespace's restore needs.
 * A kworker running that queue's work shows it in its name (`kworker/u8:1+netns`).
 */
export function netnsCleanupRunning(procRoot = '/proc'): boolean {
  for (const entry of readdirSync(procRoot)) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = readFileSync(`${procRoot}/${entry}/comm`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    if (/^kworker\/.*\+netns\b/.test(comm)) return true;
  }
  return false;
}

/**
 * Waits until no namespace teardown has run for `quietMs` (checked every `pollMs`), at most
 * `timeoutMs`; resolves with how long it waited, and whether it gave up. Benches call it between
 * timed runs, so that one run's teardown is not timed as part of the next.
 */
export async function waitForNetnsCleanup(options: { timeoutMs?: number; pollMs?: number; quietMs?: number; procRoot?: string } = {}): Promise<{ waitedMs: number; timedOut: boolean }> {
  const { timeoutMs = 30 * 60_000, pollMs = 500, quietMs = 2000, procRoot = '/proc' } = options;
  const start = Date.now();
  let quietSince = Date.now();
  for (;;) {
    if (netnsCleanupRunning(procRoot)) quietSince = Date.now();
    else if (Date.now() - quietSince >= quietMs) return { waitedMs: Math.max(0, quietSince - start), timedOut: false };
    if (Date.now() - start >= timeoutMs) return { waitedMs: Date.now() - start, timedOut: true };
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Throws unless this process runs as root. */
export function requireRoot(): void {
  if (!isRoot()) throw new Error('kernel tests need root (network namespaces, iptables)');
}

/** Whether network namespaces can be used here (root, iproute2, and a namespace can be created). */
export async function netnsAvailable(options: { tools?: readonly string[] } = {}): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (!isRoot()) return { ok: false, reason: 'not running as root' };
  const ipv = await runHost('ip', ['-V'], { timeoutMs: 5000 });
  if (ipv.code !== 0) return { ok: false, reason: `iproute2 is not usable: ${ipv.stderr.trim()}` };
  let probe: Netns | undefined;
  try {
    await cleanupStaleNetns('probe');
    probe = await createNetns('probe');
    for (const tool of options.tools ?? []) {
      const r = await probe.exec('sh', ['-c', `command -v "$1"`, 'sh', tool], { timeoutMs: 5000 });
      if (r.code !== 0) return { ok: false, reason: `${tool} is not installed` };
    }
  } catch (err) {
    return { ok: false, reason: `cannot create a network namespace: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    await probe?.destroy();
  }
  return { ok: true };
}

export type KernelTestDecision = { readonly run: true } | { readonly run: false; readonly skip: boolean; readonly reason: string };

/**
 * The policy: kernel tests may be skipped only when not root and CI is not 'true'. As root,
 * or under CI=true, being unable to run them is a failure, not a skip.
 */
export async function kernelTestDecision(options: { tools?: readonly string[] } = {}): Promise<KernelTestDecision> {
  return kernelTestPolicy({ root: isRoot(), ci: process.env['CI'], availability: await netnsAvailable(options) });
}

/** The pure rule behind kernelTestDecision (exported so it can be tested on any machine). */
export function kernelTestPolicy(input: { root: boolean; ci: string | undefined; availability: { ok: true } | { ok: false; reason: string } }): KernelTestDecision {
  if (input.availability.ok) return { run: true };
  return { run: false, skip: !input.root && input.ci !== 'true', reason: input.availability.reason };
}

/**
 * For node:test: `if (!(await kernelTestGate(t))) return;` at the top of a kernel test.
 * Skips (and returns false) only when not root and not under CI=true; otherwise, when the
 * test cannot run, throws so the test fails with the reason.
 */
export async function kernelTestGate(t: { skip(message?: string): void }, options: { tools?: readonly string[] } = {}): Promise<boolean> {
  const d = await kernelTestDecision(options);
  if (d.run) return true;
  if (d.skip) {
    t.skip(`kernel test skipped: ${d.reason} (set CI=true to make this a failure)`);
    return false;
  }
  throw new Error(`kernel test cannot run: ${d.reason}${process.env['CI'] === 'true' ? ' (CI=true: kernel tests must run)' : ' (running as root: kernel tests must run)'}`);
}
