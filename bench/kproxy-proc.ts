/**
 * A real kproxy process inside a bench namespace, and its "synced proxy rules" log lines as they
 * arrive (timestamped on arrival), plus its peak RSS. Shared by bench:sync and bench:latency.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createNetns, waitForNetnsCleanup, type Netns, type NetnsProcess } from '../src/platform/netns.js';

export const KPROXY_BIN = fileURLToPath(new URL('../../bin/kproxy.js', import.meta.url));

export interface SyncLine {
  /** performance.now() when the line arrived. */
  readonly at: number;
  readonly full: boolean;
  /** Service ports the sync changed. */
  readonly changed: number;
  /** kproxy's own measure of the sync (backend.sync), ms. */
  readonly elapsedMs: number;
}

export interface KproxyProc {
  readonly proc: NetnsProcess;
  readonly started: number;
  readonly syncs: SyncLine[];
  /** Resolves with the n-th sync line (1-based), or rejects after timeoutMs / on exit (SyncLog). */
  waitSync(n: number, timeoutMs: number): Promise<SyncLine>;
  /** The first sync after the `after`-th that changed something (SyncLog.waitChangeSync). */
  waitChangeSync(after: number, timeoutMs: number): Promise<SyncLine>;
  /** Peak resident set size so far (VmHWM), MB. */
  peakRssMB(): number;
  stop(): Promise<void>;
}

const SYNC_RE = /"synced proxy rules".*?full="(true|false)" changed="(\d+)".*?elapsed="([\d.]+)ms"/;

/**
 * kproxy's "synced proxy rules" lines, parsed from its log as it arrives (in chunks that may
 * split lines), and waits for them. A wait fails once `ended` resolves (with its reason) or after
 * its own timeout; both messages end with `tail()`, the log's last lines.
 */
export class SyncLog {
  readonly syncs: SyncLine[] = [];
  private buf = '';
  private readonly waiters: { n: number; resolve: (s: SyncLine) => void }[] = [];

  constructor(private readonly ended: Promise<string>, private readonly tail: () => string) {}

  feed(chunk: string, at: number): void {
    this.buf += chunk;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const m = SYNC_RE.exec(this.buf.slice(0, i));
      this.buf = this.buf.slice(i + 1);
      if (!m) continue;
      this.syncs.push({ at, full: m[1] === 'true', changed: Number(m[2]), elapsedMs: Number(m[3]) });
      for (const w of [...this.waiters]) {
        const s = this.syncs[w.n - 1];
        if (s) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(s);
        }
      }
    }
  }

  /** The n-th sync line (1-based). */
  waitSync(n: number, timeoutMs: number): Promise<SyncLine> {
    const have = this.syncs[n - 1];
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`kproxy: no sync #${n} within ${timeoutMs} ms; stderr tail:\n${this.tail()}`)), timeoutMs);
      void this.ended.then((why) => {
        clearTimeout(timer);
        reject(new Error(`${why} before sync #${n}; stderr tail:\n${this.tail()}`));
      });
      this.waiters.push({ n, resolve: (s) => { clearTimeout(timer); resolve(s); } });
    });
  }

  /**
   * The first sync after the `after`-th (1-based; 0 = any) that changed something: a periodic
   * sync with nothing changed (the sync period can fall between an edit and its sync) is skipped.
   * Each sync waited for gets timeoutMs.
   */
  async waitChangeSync(after: number, timeoutMs: number): Promise<SyncLine> {
    for (let n = after + 1; ; n++) {
      const s = await this.waitSync(n, timeoutMs);
      if (s.changed > 0) return s;
    }
  }
}

export function startKproxy(ns: Netns, args: readonly string[]): KproxyProc {
  const started = performance.now();
  const proc = ns.spawn(process.execPath, [KPROXY_BIN, ...args]);
  const log = new SyncLog(proc.exited.then((e) => `kproxy exited (${e.code ?? e.signal})`), () => proc.stderr().slice(-2000));
  proc.child.stderr?.on('data', (chunk: Buffer) => log.feed(chunk.toString('utf8'), performance.now()));
  return {
    proc, started, syncs: log.syncs,
    waitSync: (n, timeoutMs) => log.waitSync(n, timeoutMs),
    waitChangeSync: (after, timeoutMs) => log.waitChangeSync(after, timeoutMs),
    peakRssMB() {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
        return m?.[1] ? Number(m[1]) / 1024 : NaN;
      } catch {
        return NaN;
      }
    },
    async stop() {
      await proc.stop({ timeoutMs: 10_000 });
    },
  };
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor((s.length - 1) / 2)] ?? NaN);
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

export function ms(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  return x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${x.toFixed(x < 10 ? 1 : 0)} ms`;
}

/**
 * Waits until the kernel has finished tearing down earlier namespaces: a deleted namespace
 * holding a 30,000-service ruleset takes the kernel minutes to remove, under locks the next
 * restore needs, and that time must not be counted as the next run's (waitForNetnsCleanup).
 */
export async function kernelQuiet(log: (msg: string) => void): Promise<void> {
  const w = await waitForNetnsCleanup();
  if (w.waitedMs >= 1000 || w.timedOut) log(`waited ${(w.waitedMs / 1000).toFixed(1)} s for the kernel to finish removing earlier namespaces${w.timedOut ? ' (gave up waiting)' : ''}`);
}

/** A fresh namespace, once the kernel is quiet (kernelQuiet). */
export async function freshNetns(prefix: string, log: (msg: string) => void): Promise<Netns> {
  await kernelQuiet(log);
  return createNetns(prefix);
}
