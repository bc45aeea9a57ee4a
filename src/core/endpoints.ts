import { DEFAULT_WEIGHT, WEIGHTS_ANNOTATION, parseWeights } from './annotations.js';
import { ipFamily } from './ip.js';
import { flat } from './text.js';
import type { EndpointSliceObject } from './objects.js';
import type { ServicePort } from './service-port.js';

/** One endpoint of one service port (upstream's Endpoint). */
export interface Endpoint {
  /** "ip:port" ("[ip]:port" for IPv6): the endpoint's identity within its service port. */
  readonly key: string;
  readonly ip: string;
  readonly port: number;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  readonly nodeName: string | undefined;
  readonly zone: string | undefined;
  /** The slice's topology hints (hints.forZones / hints.forNodes names); absent or empty: no hint. */
  readonly zoneHints?: readonly string[];
  readonly nodeHints?: readonly string[];
  /** Whether the endpoint runs on this node. */
  readonly isLocal: boolean;
  /** IPVS-style weight 0..65535 from kproxy.io/weights (default 1); 0 takes no new connections. */
  readonly weight: number;
}

export function endpointKey(ip: string, port: number): string {
  return ip.includes(':') ? flat`[${ip}]:${port}` : flat`${ip}:${port}`;
}

/**
 * The endpoints of a service port, in kernel-list order: slices sorted by name, endpoints in
 * the order they appear, only the first address of each endpoint (as upstream), duplicates of
 * an ip:port dropped after the first. Only slices of the service's IP family count.
 */
export function endpointsFor(
  sp: ServicePort,
  slices: readonly EndpointSliceObject[],
  nodeName: string,
): Endpoint[] {
  const family = sp.clusterIP !== '' && sp.clusterIP !== 'None' ? ipFamily(sp.clusterIP) ?? 'IPv4' : 'IPv4';
  const sorted = [...slices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  for (const slice of sorted) {
    if (slice.addressType !== family) continue;
    const port = slice.ports.find((p) => p.name === sp.portName && p.protocol === sp.protocol);
    if (!port) continue;
    const weightsText = slice.annotations[WEIGHTS_ANNOTATION];
    const parsed = weightsText === undefined ? undefined : parseWeights(weightsText);
    const weights = parsed?.ok ? parsed.weights : undefined;
    for (const ep of slice.endpoints) {
      const ip = ep.addresses[0];
      if (ip === undefined) continue;
      const key = endpointKey(ip, port.port);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(Object.freeze({
        key,
        ip,
        port: port.port,
        ready: ep.conditions.ready,
        serving: ep.conditions.serving,
        terminating: ep.conditions.terminating,
        nodeName: ep.nodeName,
        zone: ep.zone,
        ...(ep.zoneHints !== undefined && ep.zoneHints.length > 0 ? { zoneHints: ep.zoneHints } : {}),
        ...(ep.nodeHints !== undefined && ep.nodeHints.length > 0 ? { nodeHints: ep.nodeHints } : {}),
        isLocal: nodeName !== '' && ep.nodeName === nodeName,
        weight: weights?.get(ip) ?? DEFAULT_WEIGHT,
      }));
    }
  }
  return out;
}
