/**
 * The one synthetic-cluster generator every bench uses: N services × M endpoints, as the raw
 * Kubernetes API objects kubectl would take (Service v1, discovery.k8s.io/v1 EndpointSlice).
 * Deterministic (no randomness): service i's shape depends only on i.
 *
 * Mix (by index): ~20% NodePort, ~5% LoadBalancer (with an ingress IP; every other one with
 * loadBalancerSourceRanges, every fourth with externalTrafficPolicy Local), the rest ClusterIP;
 * ~1 in 7 with sessionAffinity ClientIP; ~1 in 10 UDP. NodePorts come from 30000-32767 in
 * order and stop when the range is used up (later NodePort/LoadBalancer services become
 * ClusterIP), as a real API server would refuse more. Every 10th endpoint runs on `nodeName`.
 *
 * Addresses are all in 198.18.0.0/15 (RFC 2544 benchmarking): cluster IPs in 198.19.0.0-
 * 198.19.191.255 (up to 49,152 services), load-balancer IPs in 198.19.192.0/18, pod IPs in
 * 198.18.0.0/16 (reused across services beyond 65,000 endpoints, as a pod may back several).
 *
 * Outputs: `generateCluster` (objects), `writeManifests` (a folder of JSON List files, small
 * enough that one edit re-reads few objects), `toSourceEvents` (typed objects through the same
 * conversion the sources use), `sliceWithEndpoints` (an edit for change benches).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SourceEvent } from '../src/core/events.js';
import { convertObject } from '../src/sources/convert.js';

export type Raw = Record<string, unknown>;

export interface ClusterSpec {
  readonly services: number;
  readonly endpointsPerService: number;
  /** The node kproxy runs as; every 10th endpoint is placed on it. Default 'bench-node'. */
  readonly nodeName?: string;
  /** Namespace of every object. Default 'bench'. */
  readonly namespace?: string;
}

export interface Cluster {
  readonly services: readonly Raw[];
  /** One EndpointSlice per service, same index. */
  readonly slices: readonly Raw[];
  readonly nodeName: string;
}

const MAX_SERVICES = 192 * 256;
const NODE_PORT_BASE = 30000;
const NODE_PORT_COUNT = 2768;

/** 198.19.x.y for service i. */
export function clusterIPOf(i: number): string {
  return `198.19.${(i >>> 8) & 255}.${i & 255}`;
}

function lbIPOf(k: number): string {
  return `198.19.${192 + ((k >>> 8) & 63)}.${k & 255}`;
}

/** Pod IP number n (wraps inside 198.18.0.0/16, skipping .0 and .255 hosts). */
export function podIPOf(n: number): string {
  const k = n % (256 * 254);
  return `198.18.${Math.floor(k / 254)}.${(k % 254) + 1}`;
}

export function generateCluster(spec: ClusterSpec): Cluster {
  const n = spec.services;
  const m = spec.endpointsPerService;
  if (!Number.isInteger(n) || n < 0 || n > MAX_SERVICES) throw new Error(`cluster-gen: services must be 0..${MAX_SERVICES}, got ${n}`);
  if (!Number.isInteger(m) || m < 0 || m > 1000) throw new Error(`cluster-gen: endpointsPerService must be 0..1000, got ${m}`);
  const nodeName = spec.nodeName ?? 'bench-node';
  const ns = spec.namespace ?? 'bench';
  const services: Raw[] = [];
  const slices: Raw[] = [];
  let nodePorts = 0;
  let lbs = 0;
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    const proto = i % 10 === 3 ? 'UDP' : 'TCP';
    let type = i % 20 === 5 ? 'LoadBalancer' : i % 10 === 1 || i % 10 === 2 ? 'NodePort' : 'ClusterIP';
    if (type !== 'ClusterIP' && nodePorts >= NODE_PORT_COUNT) type = 'ClusterIP';
    const port: Raw = { name: 'p', protocol: proto, port: 80, targetPort: 8080 };
    const spec: Raw = { type, clusterIP: clusterIPOf(i), clusterIPs: [clusterIPOf(i)], ports: [port] };
    const svc: Raw = { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec };
    if (type !== 'ClusterIP') port.nodePort = NODE_PORT_BASE + nodePorts++;
    if (i % 7 === 0) {
      spec.sessionAffinity = 'ClientIP';
      spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 10800 } };
    }
    if (type === 'LoadBalancer') {
      const k = lbs++;
      if (k % 2 === 0) spec.loadBalancerSourceRanges = ['198.18.0.0/16'];
      if (k % 4 === 1) {
        spec.externalTrafficPolicy = 'Local';
        spec.healthCheckNodePort = NODE_PORT_BASE + nodePorts++;
      }
      svc.status = { loadBalancer: { ingress: [{ ip: lbIPOf(k) }] } };
    }
    services.push(svc);
    const endpoints: Raw[] = [];
    for (let e = 0; e < m; e++) {
      endpoints.push({
        addresses: [podIPOf(i * m + e)],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: e % 10 === 0 ? nodeName : `node-${(i + e) % 50}`,
      });
    }
    slices.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${name}-1`, namespace: ns, labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4', ports: [{ name: 'p', protocol: proto, port: 8080 }], endpoints,
    });
  }
  return { services, slices, nodeName };
}

/** The slice with its endpoint list replaced by the first `count` of `endpoints` (pod IPs from `base`). */
export function sliceWithEndpoints(slice: Raw, count: number, base: number, nodeName: string): Raw {
  const endpoints: Raw[] = [];
  for (let e = 0; e < count; e++) {
    endpoints.push({ addresses: [podIPOf(base + e)], conditions: { ready: true, serving: true, terminating: false }, nodeName: e % 10 === 0 ? nodeName : 'node-x' });
  }
  return { ...slice, endpoints };
}

/** How many objects each manifest file holds. */
/** The node the benches render for, with kproxy's render options for it (cluster CIDR 198.18.0.0/16). */
export const BENCH_RENDER_OPTS = {
  nodeName: 'bench-node', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/16'],
  masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: false, family: 'IPv4' as const,
};

export const SERVICES_PER_FILE = 500;
export const SLICES_PER_FILE = 50;

/** File (relative to the folder) that holds slice i in `writeManifests`' layout. */
export function sliceFileOf(i: number): string {
  return `slices-${String(Math.floor(i / SLICES_PER_FILE)).padStart(4, '0')}.json`;
}

/** Writes the cluster as JSON `List` files (services in 500s, slices in 50s) under dir. */
export function writeManifests(cluster: Cluster, dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < cluster.services.length; i += SERVICES_PER_FILE) {
    const items = cluster.services.slice(i, i + SERVICES_PER_FILE);
    writeFileSync(join(dir, `services-${String(i / SERVICES_PER_FILE).padStart(4, '0')}.json`), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  }
  for (let i = 0; i < cluster.slices.length; i += SLICES_PER_FILE) writeSliceFile(cluster.slices, dir, i);
}

/** (Re)writes the file that holds slice i, from `slices` (one per service, index order). */
export function writeSliceFile(slices: readonly Raw[], dir: string, i: number): void {
  const start = Math.floor(i / SLICES_PER_FILE) * SLICES_PER_FILE;
  writeFileSync(join(dir, sliceFileOf(i)), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: slices.slice(start, start + SLICES_PER_FILE) }));
}

/** The objects converted exactly as the sources convert them, as `add` events. Throws on an invalid one. */
export function toSourceEvents(objects: readonly Raw[]): SourceEvent[] {
  const out: SourceEvent[] = [];
  for (const raw of objects) {
    const r = convertObject(raw, { origin: { source: 'bench' }, where: 'cluster-gen' });
    if (r.status !== 'ok') throw new Error(`cluster-gen produced an object kproxy refuses: ${JSON.stringify(r.status === 'invalid' || r.status === 'ignored' ? r.problems : r)}`);
    for (const o of r.objects) {
      if (o.kind === 'Service') out.push({ kind: 'Service', type: 'add', object: o });
      else if (o.kind === 'EndpointSlice') out.push({ kind: 'EndpointSlice', type: 'add', object: o });
    }
  }
  return out;
}
