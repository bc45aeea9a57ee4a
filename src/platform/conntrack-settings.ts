/**
 * Upstream kube-proxy's conntrack setup at start (cmd/kube-proxy's setupConntrack), for the
 * kernel modes: nf_conntrack_max = max(maxPerCore × CPUs, min) when maxPerCore > 0, and the
 * TCP/UDP timeouts and tcp_be_liberal when set (0 / false: leave the kernel's value). A
 * sysctl is written only when its value differs. Raising the maximum also raises the
 * conntrack hash table (a /sys module parameter) to max/4 when it is smaller; when /sys is
 * read-only that is a warning event, as upstream, not an error. Any other failure is an
 * error: kproxy does not start half-configured.
 */
import { KproxyError, errorMessage } from '../core/errors.js';
import type { Sysctl } from './sysctl.js';

export interface ConntrackSettings {
  readonly maxPerCore: number;
  readonly min: number;
  readonly tcpEstablishedTimeoutMs: number;
  readonly tcpCloseWaitTimeoutMs: number;
  readonly tcpBeLiberal: boolean;
  readonly udpTimeoutMs: number;
  readonly udpStreamTimeoutMs: number;
}

/** The conntrack module's hash table size (/sys/module/nf_conntrack/parameters/hashsize). */
export interface HashSize {
  get(): Promise<number>;
  /** Throws an error with code 'EROFS' when /sys is read-only. */
  set(value: number): Promise<void>;
}

export interface ConntrackSetupDeps {
  readonly sysctl: Sysctl;
  readonly cpus: number;
  /** Absent: the hash table is not touched. */
  readonly hashSize?: HashSize;
  readonly warn: (reason: string, message: string) => void;
  readonly info: (message: string, kv: Record<string, unknown>) => void;
}

/** Upstream's getConntrackMax: 0 means "leave nf_conntrack_max alone". */
export function conntrackMax(s: Pick<ConntrackSettings, 'maxPerCore' | 'min'>, cpus: number): number {
  if (s.maxPerCore <= 0) return 0;
  return Math.max(s.maxPerCore * cpus, s.min);
}

const NF = 'net.netfilter.';

/** The sysctls a configuration writes, in order, with their values (seconds, counts, 0/1). */
export function conntrackSysctls(s: ConntrackSettings, cpus: number): [string, number][] {
  const out: [string, number][] = [];
  const max = conntrackMax(s, cpus);
  if (max > 0) out.push([`${NF}nf_conntrack_max`, max]);
  const secs = (ms: number): number => Math.floor(ms / 1000);
  if (s.tcpEstablishedTimeoutMs > 0) out.push([`${NF}nf_conntrack_tcp_timeout_established`, secs(s.tcpEstablishedTimeoutMs)]);
  if (s.tcpCloseWaitTimeoutMs > 0) out.push([`${NF}nf_conntrack_tcp_timeout_close_wait`, secs(s.tcpCloseWaitTimeoutMs)]);
  if (s.tcpBeLiberal) out.push([`${NF}nf_conntrack_tcp_be_liberal`, 1]);
  if (s.udpTimeoutMs > 0) out.push([`${NF}nf_conntrack_udp_timeout`, secs(s.udpTimeoutMs)]);
  if (s.udpStreamTimeoutMs > 0) out.push([`${NF}nf_conntrack_udp_timeout_stream`, secs(s.udpStreamTimeoutMs)]);
  return out;
}

/** Applies the settings; returns the sysctls it changed. */
export async function applyConntrackSettings(s: ConntrackSettings, deps: ConntrackSetupDeps): Promise<string[]> {
  const changed: string[] = [];
  for (const [key, value] of conntrackSysctls(s, deps.cpus)) {
    let current: number;
    try {
      current = await deps.sysctl.get(key);
      if (current === value) continue;
      deps.info('Setting conntrack sysctl', { key, value, was: current });
      await deps.sysctl.set(key, value);
    } catch (err) {
      const hint = key.endsWith('nf_conntrack_max')
        ? ' (outside the node\'s own network namespace it cannot be changed or raised above the node\'s: set conntrack.maxPerCore to 0, or --conntrack-max-per-core=0, as kind does)'
        : '';
      throw new KproxyError('KP_ERR_CONNTRACK_SETUP', `conntrack setting ${key}=${value}: ${errorMessage(err)}${hint}`, { cause: err });
    }
    changed.push(key);
    if (key.endsWith('nf_conntrack_max') && deps.hashSize !== undefined) {
      const want = Math.floor(value / 4);
      const have = await deps.hashSize.get();
      if (have >= want) continue;
      try {
        await deps.hashSize.set(want);
        changed.push('hashsize');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EROFS') {
          throw new KproxyError('KP_ERR_CONNTRACK_SETUP', `conntrack hash size ${want}: ${errorMessage(err)}`, { cause: err });
        }
        deps.warn('ReadOnlySysFS', 'CRI error: /sys is read-only: cannot modify conntrack limits, problems may arise later (If running Docker, see docker issue #24000)');
      }
    }
  }
  return changed;
}

const HASHSIZE = '/sys/module/nf_conntrack/parameters/hashsize';

/** The node's conntrack hash size parameter (global to the kernel: never used in tests). */
export function sysHashSize(): HashSize {
  return {
    async get() {
      const { readFile } = await import('node:fs/promises');
      return Number((await readFile(HASHSIZE, 'utf8')).trim());
    },
    async set(value) {
      const { writeFile } = await import('node:fs/promises');
      await writeFile(HASHSIZE, String(value));
    },
  };
}
