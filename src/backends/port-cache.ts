/**
 * The incremental part of the kernel renderers (iptables and nftables): which service ports a
 * render must redo. A snapshot keeps the very same ServicePort and endpoint-list objects for ports
 * that did not change, so a port whose objects are identical to the previous render's reuses its
 * rendered fragment; a change of this node's name or zone (topology hints) invalidates every one.
 */
import type { Endpoint } from '../core/endpoints.js';
import type { ServicePortName } from '../core/ids.js';
import type { ServicePort } from '../core/service-port.js';
import type { Snapshot } from '../core/snapshot.js';
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

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class PortCache<V, F> {
  private entries = new Map<ServicePortName, PortEntry<V, F>>();
  private names: ServicePortName[] = [];
  private topologyKey: string | undefined;

  /** viewOf: what a port renders from (a string: why it is skipped; undefined: not this family's). */
  constructor(private readonly viewOf: (sp: ServicePort, eps: readonly Endpoint[]) => V | string | undefined) {}

  /**
   * Brings the entries up to the snapshot. Entries to render again have no fragment; when this
   * node's topology changed, every fragment is dropped. Returns the entries in a fixed order.
   */
  update(snap: Snapshot, nodeName: string): { readonly ordered: readonly PortEntry<V, F>[]; readonly topology: NodeTopology; readonly topologyChanged: boolean } {
    const prev = this.entries;
    const next = new Map<ServicePortName, PortEntry<V, F>>();
    let namesChanged = snap.servicePorts.size !== prev.size;
    for (const [name, sp] of snap.servicePorts) {
      const eps = snap.endpoints.get(name) ?? NO_ENDPOINTS;
      const old = prev.get(name);
      if (old !== undefined && old.sp === sp && old.eps === eps) {
        next.set(name, old);
        continue;
      }
      if (old === undefined) namesChanged = true;
      next.set(name, { name, sp, eps, view: this.viewOf(sp, eps), fragment: undefined });
    }
    this.entries = next;
    if (namesChanged) this.names = [...next.keys()].sort(compareNames);
    const topology = nodeTopology(nodeName !== '' ? nodeName : snap.nodeName, snap.node);
    const key = `${topology.nodeName}\0${topology.zone}`;
    const topologyChanged = key !== this.topologyKey;
    this.topologyKey = key;
    if (topologyChanged) for (const e of next.values()) e.fragment = undefined;
    const ordered: PortEntry<V, F>[] = [];
    for (const name of this.names) {
      const e = next.get(name);
      if (e !== undefined) ordered.push(e);
    }
    return { ordered, topology, topologyChanged };
  }
}
