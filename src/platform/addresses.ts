/** This host's addresses (the node's IPs), optionally limited to CIDRs (--nodeport-addresses). */
import { networkInterfaces } from 'node:os';
import { parseCIDR } from '../core/ip.js';

export function localAddresses(family: 'IPv4' | 'IPv6', cidrs: readonly string[] = [], excludeInterfaces: readonly string[] = []): string[] {
  const nets = cidrs.map((c) => parseCIDR(c)).filter((c) => c !== undefined);
  const out = new Set<string>();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (excludeInterfaces.includes(name)) continue;
    for (const a of addrs ?? []) {
      if (a.family !== family) continue;
      if (nets.length > 0 && !nets.some((n) => n.contains(a.address))) continue;
      out.add(a.address);
    }
  }
  return [...out].sort();
}
