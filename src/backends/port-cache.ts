/**
 * What the kernel renderers share about service ports: the per-family view of a port (viewOf,
 * validPort; IPVS uses validPort too) and the incremental part (iptables and nftables): which
 * service ports a render must redo. A snapshot keeps the very same ServicePort and endpoint-list objects for ports
 * that did not change, so a port whose objects are identical to the previous render's reuses its
 * rendered fragment; a change of this node's name or zone (topology hints) invalidates every one.
 */
import type { Endpoint } from '../core/endpoints.js';
import type { ServicePortName } from '../core/ids.js';
import type { ServicePort } from '../core/service-port.js';
import type { Snapshot } from '../core/snapshot.js';
import { canonicalIP, parseCIDR } from '../core/ip.js';
import { nodeTopology, type NodeTopology } from '../core/traffic-policy.js';

/** A service port as last seen: its view (or why it is skipped), and its fragment once rendered. */
export interface PortEntry<V, F> {
  readonly name: ServicePortName;
  readonly sp: ServicePort;
  readonly eps: readonly Endpoint[];
  readonly view: V | string | undefined;
  fragment: F | undefined;
}

const NO_ENDPOINTS: readonly Endpoint[] = Object.freeze([]);
const NO_IPS: readonly string[] = Object.freeze([]);

/** The order of service port names in a render (code unit order). */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class PortCache<V, F> {
  private readonly entries = new Map<ServicePortName, PortEntry<V, F>>();
  private names: ServicePortName[] = [];
  private topologyKey: string | undefined;
  /** The names the last fragments() call returned. */
  private lastNames: readonly ServicePortName[] | undefined;

  /** viewOf: what a port renders from (a string: why it is skipped; undefined: not this family's). */
  constructor(private readonly viewOf: (sp: ServicePort, eps: readonly Endpoint[]) => V | string | undefined) {}

  /**
   * Brings the entries up to the snapshot. Entries to render again have no fragment; when this
   * node's topology changed, every fragment is dropped. Returns the entries in a fixed order.
   */
  update(snap: Snapshot, nodeName: string): { readonly ordered: readonly PortEntry<V, F>[]; readonly topology: NodeTopology; readonly topologyChanged: boolean } {
    // In place: a new Map of every port at each sync would be ~1 MB of hash tables at 10,000
    // services, for a handful of changed ports.
    const entries = this.entries;
    let namesChanged = false;
    snap.servicePorts.forEach((sp, name) => {
      const eps = snap.endpoints.get(name) ?? NO_ENDPOINTS;
      const old = entries.get(name);
      if (old !== undefined && old.sp === sp && old.eps === eps) return;
      if (old === undefined) namesChanged = true;
      entries.set(name, { name, sp, eps, view: this.viewOf(sp, eps), fragment: undefined });
    });
    if (entries.size !== snap.servicePorts.size) {
      for (const name of entries.keys()) if (!snap.servicePorts.has(name)) entries.delete(name);
      namesChanged = true;
    }
    if (namesChanged) this.names = [...entries.keys()].sort(compareNames);
    const topology = nodeTopology(nodeName !== '' ? nodeName : snap.nodeName, snap.node);
    const key = `${topology.nodeName}\0${topology.zone}`;
    const topologyChanged = key !== this.topologyKey;
    this.topologyKey = key;
    if (topologyChanged) for (const e of entries.values()) e.fragment = undefined;
    const ordered: PortEntry<V, F>[] = [];
    for (const name of this.names) {
      const e = entries.get(name);
      if (e !== undefined) ordered.push(e);
    }
    return { ordered, topology, topologyChanged };
  }

  /**
   * Every port's fragment in order, rendering those that have none (all of them when
   * rerenderAll), with the ports' names at the same indexes (two arrays, not a pair per port: at
   * 10,000 services pairs were 400 kB per render that the model keeps); ports skipped as invalid
   * come back with their reasons instead. When the ports are the same as at the last call (an
   * endpoint change), the very same names array comes back, so models can be compared port by
   * port without comparing names (forEachChangedPort) and a renderer can tell by identity.
   */
  fragments(ordered: readonly PortEntry<V, F>[], render: (view: V) => F, rerenderAll = false):
  { readonly names: readonly ServicePortName[]; readonly fragments: readonly F[]; readonly skipped: Map<ServicePortName, string>; readonly rendered: number } {
    const made: ServicePortName[] = [];
    const fragments: F[] = [];
    const skipped = new Map<ServicePortName, string>();
    let rendered = 0;
    for (const e of ordered) {
      if (e.view === undefined) continue;
      if (typeof e.view === 'string') {
        skipped.set(e.name, e.view);
        continue;
      }
      if (e.fragment === undefined || rerenderAll) {
        e.fragment = render(e.view);
        rendered++;
      }
      made.push(e.name);
      fragments.push(e.fragment);
    }
    const names = this.lastNames !== undefined && sameList(this.lastNames, made) ? this.lastNames : made;
    this.lastNames = names;
    return { names, fragments, skipped, rendered };
  }
}

/**
 * The same strings in the same order: port or chain names, or a chain's rules (strings a render
 * reused are the very same, so this is mostly pointer compares).
 */
export function sameList(now: readonly string[], before: readonly string[] | undefined): boolean {
  if (before === undefined || now.length !== before.length) return false;
  for (let i = 0; i < now.length; i++) if (now[i] !== before[i]) return false;
  return true;
}

/** A service port after upstream's per-family filtering, with canonical addresses. */
export interface PortView {
  readonly sp: ServicePort;
  readonly clusterIP: string;
  readonly externalIPs: readonly string[];
  readonly loadBalancerIPs: readonly string[];
  readonly sourceRanges: readonly { readonly cidr: string; contains(ip: string): boolean }[];
  readonly endpoints: readonly Endpoint[];
}

/**
 * The port as this family's proxier sees it; undefined when it belongs to no proxier of this
 * family (no cluster IP, or one of the other family: upstream ignores those silently); a
 * string (the reason) when it is invalid.
 */
export function viewOf(sp: ServicePort, eps: readonly Endpoint[], family: 'IPv4' | 'IPv6'): PortView | string | undefined {
  if (sp.clusterIP === '' || sp.clusterIP === 'None') return undefined;
  const cip = canonicalIP(sp.clusterIP);
  if (!cip) return `invalid cluster IP ${JSON.stringify(sp.clusterIP)}`;
  if (cip.family !== family) return undefined;
  if (!validPort(sp.port)) return `invalid port ${sp.port}`;
  if (sp.nodePort !== 0 && !validPort(sp.nodePort)) return `invalid node port ${sp.nodePort}`;
  if (sp.healthCheckNodePort !== 0 && !validPort(sp.healthCheckNodePort)) return `invalid health check node port ${sp.healthCheckNodePort}`;
  const ips = (list: readonly string[]): readonly string[] => {
    if (list.length === 0) return NO_IPS;
    const out: string[] = [];
    for (const t of list) {
      const c = canonicalIP(t);
      if (c && c.family === family && !out.includes(c.ip)) out.push(c.ip);
    }
    return out;
  };
  const sourceRanges: { cidr: string; contains(ip: string): boolean }[] = [];
  for (const t of sp.loadBalancerSourceRanges) {
    const c = parseCIDR(t.trim());
    if (c && c.family === family && !sourceRanges.some((r) => r.cidr === c.cidr)) sourceRanges.push(c);
  }
  // The snapshot already keeps only slices of the service's address family; this guards the port
  // and family. Usually every endpoint passes: then the snapshot's list is used, not a copy.
  const usable = (e: Endpoint): boolean => validPort(e.port) && e.ip.includes(':') === (family === 'IPv6');
  const endpoints = eps.every(usable) ? eps : eps.filter(usable);
  return { sp, clusterIP: cip.ip, externalIPs: ips(sp.externalIPs), loadBalancerIPs: ips(sp.loadBalancerIPs), sourceRanges, endpoints };
}

export function validPort(p: number): boolean {
  return Number.isInteger(p) && p >= 1 && p <= 65535;
}

/**
 * A model's service ports as a view over two arrays in name order (PortCache's), looked up by
 * binary search: a Map of 10,000 ports made at every sync was most of what a model kept per sync
 * that outlived it (~0.7 MB of hash table, left for the next full garbage collection).
 */
export class SortedPorts<V> implements ReadonlyMap<ServicePortName, V> {
  constructor(
    /** In compareNames order, each once. */
    readonly names: readonly ServicePortName[],
    /** At the same indexes as their names. */
    readonly items: readonly V[],
  ) {}

  get size(): number {
    return this.names.length;
  }

  indexOf(name: string): number {
    let lo = 0;
    let hi = this.names.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareNames(this.names[mid] as string, name);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  get(name: ServicePortName): V | undefined {
    const i = this.indexOf(name);
    return i < 0 ? undefined : this.items[i];
  }

  has(name: ServicePortName): boolean {
    return this.indexOf(name) >= 0;
  }

  values(): MapIterator<V> {
    return this.items.values();
  }

  keys(): MapIterator<ServicePortName> {
    return this.names.values();
  }

  *entries(): MapIterator<[ServicePortName, V]> {
    for (let i = 0; i < this.names.length; i++) yield [this.names[i] as ServicePortName, this.items[i] as V];
  }

  [Symbol.iterator](): MapIterator<[ServicePortName, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: ServicePortName, map: ReadonlyMap<ServicePortName, V>) => void, thisArg?: unknown): void {
    for (let i = 0; i < this.names.length; i++) fn.call(thisArg, this.items[i] as V, this.names[i] as ServicePortName, this);
  }
}

/**
 * Walks two sorted views side by side, in name order, and calls `fn` for every service port
 * whose value is not the very same object in both (a side without the port gives undefined), and
 * for every port of `also` that both have. A partial sync's question: which ports to write again,
 * and which earlier objects are gone, without a lookup per port.
 */
export function forEachChangedPort<V>(
  now: SortedPorts<V>, before: SortedPorts<V>, also: ReadonlySet<ServicePortName>,
  fn: (name: ServicePortName, now: V | undefined, before: V | undefined) => void,
): void {
  const { names: a, items: av } = now;
  const { names: b, items: bv } = before;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const c = i >= a.length ? 1 : j >= b.length ? -1 : a === b ? 0 : compareNames(a[i] as string, b[j] as string);
    if (c === 0) {
      const name = a[i] as ServicePortName;
      const p = av[i];
      const q = bv[j];
      if (p !== q || also.has(name)) fn(name, p, q);
      i++;
      j++;
    } else if (c < 0) {
      fn(a[i] as ServicePortName, av[i], undefined);
      i++;
    } else {
      fn(b[j] as ServicePortName, undefined, bv[j]);
      j++;
    }
  }
}
