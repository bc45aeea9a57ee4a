/**
 * Shared pieces of the kernel (network namespace) tests: paths, bounded polling, normalized
 * iptables-save output, and a read-only snapshot of the root namespace's network state.
 */
import { fileURLToPath } from 'node:url';
import { textOf } from '../../src/core/text.js';
import type { Exec } from '../../src/platform/exec.js';
import { cleanupStaleNetns, createNetns, runHost, type Netns, type NetnsProcess } from '../../src/platform/netns.js';

/** The repository root (this file is compiled to dist/test/helpers/, three levels down). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const KPROXY_BIN = `${REPO_ROOT}bin/kproxy.js`;
export const POD_JS = `${REPO_ROOT}dist/test/helpers/netns-pod.js`;
export const CLIENT_JS = `${REPO_ROOT}dist/test/helpers/netns-client.js`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `fn` every stepMs until it returns a value other than undefined/false, or rejects
 * after timeoutMs with `what` and the last value seen (via `describeLast`).
 */
export async function pollUntil<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; stepMs?: number; describeLast?: () => string } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${options.describeLast ? `\n${options.describeLast()}` : ''}`);
    }
    await sleep(options.stepMs ?? 50);
  }
}

/** iptables-save output without comments/timestamps and with every counter zeroed. */
export function normalizeIptablesSave(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]'))
    .join('\n');
}

/** `iptables-save` (all tables, or one) inside a namespace, normalized. */
export async function iptablesSave(ns: Netns, table?: string): Promise<string> {
  const r = await ns.execOk('iptables-save', table === undefined ? [] : ['-t', table], { timeoutMs: 10_000 });
  return normalizeIptablesSave(r.stdout);
}

/**
 * A read-only snapshot of the root namespace's network configuration: iptables rules, nft
 * ruleset, ipsets, routes (all tables, both families), link names and sysctls that tests
 * must never touch. Counters and timers are normalized away.
 */
export async function rootNetworkState(): Promise<Record<string, string>> {
  const read = async (cmd: string, args: string[]): Promise<string> => {
    const r = await runHost(cmd, args, { timeoutMs: 10_000 });
    return r.code === 127 ? '(not installed)' : `${r.code}\n${r.stdout}`;
  };
  return {
    'iptables-save': normalizeIptablesSave(await read('iptables-save', [])),
    'nft list ruleset': (await read('nft', ['list', 'ruleset'])).replace(/counter packets \d+ bytes \d+/g, 'counter'),
    'ipset list -n': await read('ipset', ['list', '-n']),
    'ip -4 route show table all': await read('ip', ['-4', 'route', 'show', 'table', 'all']),
    'ip -6 route show table all': (await read('ip', ['-6', 'route', 'show', 'table', 'all'])).replace(/ expires \d+sec/g, ''),
    'ip link names': (await read('ip', ['-o', 'link', 'show'])).split('\n').map((l) => l.split(':')[1]?.trim() ?? '').join(' '),
    'ip addr': (await read('ip', ['-o', 'addr', 'show'])).replace(/(valid|preferred)_lft \S+/g, '').replace(/\\\s+/g, ' '),
    'sysctl ip_forward': await read('sysctl', ['-n', 'net.ipv4.ip_forward']),
    'sysctl route_localnet': await read('sysctl', ['-n', 'net.ipv4.conf.all.route_localnet']),
  };
}

/** Runs the client helper inside a namespace and parses its JSON line. */
export async function runClient<T>(ns: Netns, args: readonly string[], timeoutMs = 20_000): Promise<{ ok: boolean; error?: string; replies: T[] }> {
  const r = await ns.exec(process.execPath, [CLIENT_JS, ...args], { timeoutMs });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as { ok: boolean; error?: string; replies: T[] };
  } catch {
    return { ok: false, error: `client exited ${r.code} without a result: ${r.stderr.trim() || r.stdout.trim()}`, replies: [] };
  }
}

export interface SessionAnswer { ok: boolean; id?: number; reply?: string; error?: string }

/**
 * Starts a netns-client `session` in `ns` and returns its driver: each call sends one command
 * and resolves with its answer; `end()` closes stdin (the client then closes what it holds).
 */
export function clientSession(ns: Netns, timeoutMs: number, answerWithinMs = 30_000): { send: (cmd: object) => Promise<SessionAnswer>; proc: NetnsProcess; end: () => void } {
  const proc = ns.spawn(process.execPath, [CLIENT_JS, 'session', String(timeoutMs)]);
  let seen = 0;
  return {
    proc,
    send: async (cmd) => {
      proc.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
      const want = seen + 1;
      await pollUntil(`client session answer to ${JSON.stringify(cmd)}`, () => proc.stdout().split('\n').length > want || !proc.running,
        { timeoutMs: answerWithinMs, stepMs: 10, describeLast: () => proc.stderr() });
      const line = proc.stdout().split('\n')[seen] ?? '';
      seen = want;
      try {
        return JSON.parse(line) as SessionAnswer;
      } catch {
        return { ok: false, error: `client session exited without an answer: ${proc.stderr().trim()}` };
      }
    },
    end: () => { proc.child.stdin?.end(); },
  };
}

/**
 * A fresh node namespace (`tag`'s leftovers removed first) for syncs proven from the node
 * itself: the pods' addresses on lo (each pod a process answering TCP on ip:8080 with its name),
 * and 198.18.100.0/24 (the ClusterIPs) routed to a veth device whose peer answers nothing, so a
 * connection to a ClusterIP reaches a pod only through the nat OUTPUT path's DNAT. The pods stop
 * by themselves after maxMs; the caller destroys the namespace (this does, if setting it up fails).
 */
export async function nodeWithPods(tag: string, pods: Readonly<Record<string, string>>, maxMs: number): Promise<Netns> {
  await cleanupStaleNetns(tag);
  const node = await createNetns(tag);
  try {
    for (const ip of Object.values(pods)) await node.execOk('ip', ['addr', 'add', `${ip}/32`, 'dev', 'lo']);
    await node.execOk('ip', ['link', 'add', 'kp-svc', 'type', 'veth', 'peer', 'name', 'kp-peer']);
    await node.execOk('ip', ['addr', 'add', '198.18.0.1/32', 'dev', 'kp-svc']);
    for (const l of ['kp-svc', 'kp-peer']) await node.execOk('ip', ['link', 'set', l, 'up']);
    await node.addRoute('198.18.100.0/24', { dev: 'kp-svc' });
    for (const [name, ip] of Object.entries(pods)) {
      await node.spawn(process.execPath, [POD_JS, '--name', name, '--tcp', `${ip}:8080`, '--max-ms', String(maxMs)]).waitForOutput('ready', 10_000);
    }
    return node;
  } catch (err) {
    await node.destroy();
    throw err;
  }
}

/**
 * An exec into `ns` for a staged sync's failure tests: it counts the staging inputs the kernel
 * tool is given, and breaks the main one (`inject = 'main'`) or the second stage ('stage2') with
 * `broken`. `tool` picks the tool's runs with an input, `isMain` the main input among them.
 */
export class StageFaults {
  inject: 'none' | 'main' | 'stage2' = 'none';
  stagesSeen = 0;
  readonly exec: Exec;

  constructor(ns: Netns, spec: {
    readonly tool: (cmd: string, args: readonly string[]) => boolean;
    readonly isMain: (args: readonly string[], input: string) => boolean;
    readonly broken: (input: string) => string;
  }) {
    this.exec = (cmd, args, options) => {
      let input = options?.input === undefined ? undefined : textOf(options.input);
      if (input !== undefined && spec.tool(cmd, args)) {
        const main = spec.isMain(args, input);
        if (!main) this.stagesSeen++;
        if ((this.inject === 'main' && main) || (this.inject === 'stage2' && !main && this.stagesSeen === 2)) input = spec.broken(input);
      }
      return ns.exec(cmd, args, { ...options, ...(input === undefined ? {} : { input }), timeoutMs: 30_000 });
    };
  }
}

/** Which pod answers a connection to ip:80 from the node, or the client's error. */
export async function podReached(ns: Netns, ip: string): Promise<string> {
  const r = await runClient<string>(ns, ['tcp', ip, '80', '1', '1500']);
  return r.ok ? (r.replies[0] ?? '').split(' ')[0] ?? '' : `error: ${r.error ?? ''}`;
}
