import type { Snapshot } from '../core/snapshot.js';

export const PROXY_MODES = ['userspace', 'iptables', 'ipvs', 'nftables'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];

/**
 * A backend programs one snapshot at a time. `sync` either fully succeeds or throws, leaving
 * what was installed before in place; the proxier then retries with a full snapshot.
 */
export interface Backend {
  readonly mode: ProxyMode;
  sync(snapshot: Snapshot): Promise<void>;
  /** Idempotent: stops serving, drains within its bound, removes what it installed. */
  close(): Promise<void>;
}
