/** Shared helpers for the scheduler tests (no tests here). */
import type { SchedContext, SchedDest, Scheduler } from '../../src/scheduling/scheduler.js';

/** A destination whose counters and flags the test mutates, as the proxy does. */
export class D implements SchedDest {
  activeConns = 0;
  inactiveConns = 0;
  overloaded = false;
  readonly key: string;
  constructor(
    readonly name: string,
    public weight: number,
    readonly ip: string,
    readonly port = 80,
  ) {
    this.key = `${ip}:${port}`;
  }
}

/** Destinations named A, B, C... at 198.18.0.1, .2, .3... with the given weights. */
export function dests(...weights: number[]): D[] {
  return weights.map((w, i) => new D(String.fromCharCode(65 + i), w, `198.18.0.${i + 1}`));
}

export function ctx(over: Partial<SchedContext> = {}): SchedContext {
  return { clientIP: '198.51.100.1', clientPort: 40000, vip: '198.18.10.1', vport: 80, protocol: 'TCP', ...over };
}

/** The name of a chosen destination ('-' for none). */
export function nameOf(list: readonly D[], d: SchedDest | undefined): string {
  if (!d) return '-';
  return list.find((x) => x.key === d.key)?.name ?? `?${d.key}`;
}

/**
 * Schedules `n` connections and returns the chosen names. With `open`, each choice opens an
 * active connection on the chosen destination (activeconns++), as the kernel's counters move.
 */
export function run(s: Scheduler, list: readonly D[], n: number, open = false, c: SchedContext = ctx()): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = s.schedule(list, c);
    out.push(nameOf(list, d));
    if (open && d) {
      const x = list.find((y) => y.key === d.key);
      if (x) x.activeConns++;
    }
  }
  return out;
}

export class FakeClock {
  t = 0;
  readonly now = (): number => this.t;
}

export const SEC = 1000;
export const MIN = 60 * SEC;
export const HOUR = 60 * MIN;
