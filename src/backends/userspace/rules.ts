/**
 * The nat rules userspace mode needs for service addresses it cannot bind (upstream's
 * userspace proxier "portals"): traffic to such an address is REDIRECTed to the proxy port
 * that serves it. Pure: render → text, no I/O.
 */
import type { Protocol } from '../../core/objects.js';

export const PORTALS_CONTAINER = 'KUBE-PORTALS-CONTAINER';
export const PORTALS_HOST = 'KUBE-PORTALS-HOST';
export const USERSPACE_CHAINS = [PORTALS_CONTAINER, PORTALS_HOST] as const;

/** The jumps from the built-in chains into ours: [built-in chain, our chain, comment]. */
export const USERSPACE_JUMPS: readonly (readonly [string, string, string])[] = [
  ['PREROUTING', PORTALS_CONTAINER, 'handle ClusterIPs; NOTE: this must be before the NodePort rules'],
  ['OUTPUT', PORTALS_HOST, 'handle ClusterIPs; NOTE: this must be before the NodePort rules'],
];

export interface Portal {
  /** ServicePortName, used as the rule comment. */
  readonly servicePort: string;
  readonly ip: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly proxyPort: number;
}

function comparePortals(a: Portal, b: Portal): number {
  return a.servicePort.localeCompare(b.servicePort) || a.ip.localeCompare(b.ip) || a.port - b.port || a.protocol.localeCompare(b.protocol);
}

/** Renders `iptables-restore --noflush` input that replaces our two chains' contents. */
export function renderPortals(portals: readonly Portal[]): string {
  const lines = ['*nat', `:${PORTALS_CONTAINER} - [0:0]`, `:${PORTALS_HOST} - [0:0]`];
  const sorted = [...portals].sort(comparePortals);
  for (const chain of USERSPACE_CHAINS) {
    for (const p of sorted) {
      const proto = p.protocol.toLowerCase();
      lines.push(`-A ${chain} -d ${p.ip}/32 -p ${proto} -m comment --comment "${p.servicePort}" -m ${proto} --dport ${p.port} -j REDIRECT --to-ports ${p.proxyPort}`);
    }
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}
