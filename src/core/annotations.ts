/**
 * kproxy's own annotations. Parsing lives here so that sources (which report bad values with
 * their location) and the snapshot (which applies them) share one definition.
 */
export const SCHEDULER_ANNOTATION = 'kproxy.io/scheduler';
export const WEIGHTS_ANNOTATION = 'kproxy.io/weights';

/** The IPVS schedulers kproxy implements, with the kernel's names. */
export const SCHEDULER_NAMES = ['rr', 'wrr', 'lc', 'wlc', 'sed', 'nq', 'dh', 'sh', 'lblc', 'lblcr', 'mh'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

export function isSchedulerName(s: string): s is SchedulerName {
  return (SCHEDULER_NAMES as readonly string[]).includes(s);
}

export const DEFAULT_WEIGHT = 1;
export const MAX_WEIGHT = 65535;

/**
 * Parses the kproxy.io/weights annotation: a JSON object from endpoint address to an integer
 * weight in 0..65535. Returns the map, or an error message saying what is wrong.
 */
export function parseWeights(text: string): { ok: true; weights: ReadonlyMap<string, number> } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `not valid JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return { ok: false, error: 'must be a JSON object from endpoint address to integer weight' };
  }
  const weights = new Map<string, number>();
  for (const [addr, w] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > MAX_WEIGHT) {
      return { ok: false, error: `weight for ${JSON.stringify(addr)} must be an integer in 0..${MAX_WEIGHT}, got ${JSON.stringify(w)}` };
    }
    weights.set(addr, w);
  }
  return { ok: true, weights };
}
