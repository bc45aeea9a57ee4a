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

/**
 * One scripted series of connections on which two implementations of a scheduler must make the
 * same choices: `open` a connection from client number `from` to destination number `to`, or
 * `close` the connection opened at step-index `close` (counting opens only). Clients 1..8
 * vary the source address (sh, mh); destinations 0..3 vary the address the packet was sent to
 * (dh, lblc, lblcr); held and closed connections move the counters (lc, wlc, sed, nq, lblc*).
 * Used by the userspace proxy test (test/backends/userspace/schedulers.test.ts, one virtual
 * address: `to` is not used there) and by the real-IPVS test in the VM
 * (test/vm/schedulers.guest.ts, a firewall-mark virtual service over four addresses).
 */
export type SchedStep = { readonly open: number; readonly to: number } | { readonly close: number };
export const SCHED_SCRIPT: readonly SchedStep[] = [
  { open: 1, to: 0 }, { open: 2, to: 1 }, { open: 3, to: 2 }, { close: 1 },
  { open: 1, to: 3 }, { open: 4, to: 0 }, { close: 0 }, { close: 2 },
  { open: 5, to: 1 }, { open: 2, to: 1 }, { open: 6, to: 2 }, { close: 3 },
  { open: 7, to: 3 }, { open: 1, to: 0 }, { open: 8, to: 2 }, { open: 3, to: 1 },
  // Drain most servers, then crowd one destination address: lblc moves its cached server once
  // that server is overloaded, lblcr grows the address's server set; then free the first.
  { close: 5 }, { close: 6 }, { close: 7 }, { close: 8 }, { close: 10 }, { close: 11 },
  { open: 2, to: 0 }, { open: 4, to: 0 }, { open: 6, to: 0 }, { open: 8, to: 0 }, { open: 5, to: 0 }, { open: 7, to: 0 },
  { close: 4 }, { close: 9 }, { close: 12 }, { close: 13 }, { open: 3, to: 0 }, { open: 6, to: 0 },
];
/** Weights of the three real servers the script runs against, in the service's list order. */
export const SCHED_WEIGHTS: readonly number[] = [3, 1, 2];
