/**
 * The proxy's state at one sync: immutable, built incrementally from tracked changes.
 * Backends read only this.
 */
import type { Endpoint } from './endpoints.js';
import { endpointsFor } from './endpoints.js';
import { assertNever } from './errors.js';
import type { SourceEvent } from './events.js';
import { namespacedName, type NamespacedName, type ServicePortName } from './ids.js';
import type { EndpointSliceObject, NodeObject, ServiceObject } from './objects.js';
import { servicePortsOf, type ServicePort } from './service-port.js';
import { ChangeTracker } from './tracker.js';
import { OverlayMap } from './overlay-map.js';

export interface Snapshot {
  /** Increases by one per snapshot. */
  readonly generation: number;
  readonly nodeName: string;
  readonly node: NodeObject | undefined;
  readonly servicePorts: ReadonlyMap<ServicePortName, ServicePort>;
  /** Endpoints per service port in kernel-list order; a port with none has an empty list. */
  readonly endpoints: ReadonlyMap<ServicePortName, readonly Endpoint[]>;
  /** Service ports added, changed or removed (or whose endpoints changed) since the previous snapshot. */
  readonly changed: ReadonlySet<ServicePortName>;
  /** Service ports that existed in the previous snapshot and are gone now. */
  readonly removed: ReadonlyMap<ServicePortName, ServicePort>;
  /** Per-service-port endpoints that existed before and are gone now (for conntrack cleanup). */
  readonly removedEndpoints: ReadonlyMap<ServicePortName, readonly Endpoint[]>;
  /** True when everything must be (re)programmed: the first snapshot, or after a node change. */
  readonly full: boolean;
  /**
   * `endpoints.kubernetes.io/last-change-trigger-time` (ms since the epoch) of the EndpointSlices
   * that changed since the previous snapshot: when the change that this sync programs happened.
   */
  readonly triggerTimes: readonly number[];
}

export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface SnapshotCounters {
  serviceChanges: number;
  endpointChanges: number;
}

/**
 * Owns the trackers and the current object state. Sources' events go in through `handle`;
 * `next()` folds pending changes into a new Snapshot.
 */
export class SnapshotBuilder {
  private readonly services = new Map<NamespacedName, ServiceObject>();
  /** Slices grouped by the service they belong to, then by slice id. */
  private readonly slicesByService = new Map<NamespacedName, Map<NamespacedName, EndpointSliceObject>>();
  private readonly serviceTracker = new ChangeTracker<NamespacedName, ServiceObject>();
  private readonly sliceTracker = new ChangeTracker<NamespacedName, EndpointSliceObject>();
  private node: NodeObject | undefined;
  private nodeChanged = false;
  private current: Snapshot | undefined;
  private readonly sliceOwner = new Map<NamespacedName, NamespacedName>();
  readonly counters: SnapshotCounters = { serviceChanges: 0, endpointChanges: 0 };

  constructor(private readonly nodeName: string) {}

  /** Applies one source event to the pending state. Returns true if something is now pending. */
  handle(ev: SourceEvent): boolean {
    switch (ev.kind) {
      case 'Service': {
        const prev = ev.type === 'add' ? undefined : ev.type === 'update' ? ev.previous : ev.object;
        const cur = ev.type === 'delete' ? undefined : ev.object;
        this.counters.serviceChanges++;
        return this.serviceTracker.record(ev.object.id, prev, cur);
      }
      case 'EndpointSlice': {
        const prev = ev.type === 'add' ? undefined : ev.type === 'update' ? ev.previous : ev.object;
        const cur = ev.type === 'delete' ? undefined : ev.object;
        this.counters.endpointChanges++;
        return this.sliceTracker.record(ev.object.id, prev, cur);
      }
      case 'Node':
        if (ev.object.name !== this.nodeName) return false;
        this.node = ev.type === 'delete' ? undefined : ev.object;
        this.nodeChanged = true;
        return true;
      case 'synced':
        return false;
      default:
        return assertNever(ev, 'source event');
    }
  }

  get pending(): boolean {
    return this.current === undefined || this.nodeChanged || this.serviceTracker.size > 0 || this.sliceTracker.size > 0;
  }

  get snapshot(): Snapshot | undefined {
    return this.current;
  }

  /** Folds pending changes into a new snapshot. `forceFull` marks it full (e.g. after a failed apply). */
  next(forceFull = false): Snapshot {
    const prev = this.current;
    const dirtyServices = new Set<NamespacedName>();
    const triggerTimes: number[] = [];
    for (const [id, ch] of this.serviceTracker.drain()) {
      if (ch.current) this.services.set(id, ch.current);
      else this.services.delete(id);
      dirtyServices.add(id);
    }
    for (const [id, ch] of this.sliceTracker.drain()) {
      const oldOwner = this.sliceOwner.get(id);
      if (oldOwner !== undefined) {
        this.slicesByService.get(oldOwner)?.delete(id);
        dirtyServices.add(oldOwner);
        this.sliceOwner.delete(id);
      }
      if (ch.current) {
        const trigger = ch.current.annotations[TRIGGER_TIME_ANNOTATION];
        const at = trigger === undefined ? NaN : Date.parse(trigger);
        if (Number.isFinite(at)) triggerTimes.push(at);
        const owner = namespacedName(ch.current.namespace, ch.current.serviceName);
        let m = this.slicesByService.get(owner);
        if (!m) this.slicesByService.set(owner, (m = new Map()));
        m.set(id, ch.current);
        this.sliceOwner.set(id, owner);
        dirtyServices.add(owner);
      }
    }
    const full = prev === undefined || this.nodeChanged || forceFull;
    this.nodeChanged = false;

    // Drafts over the previous snapshot's maps: a sync changes a few entries of 10,000.
    const servicePorts = OverlayMap.draft(prev?.servicePorts);
    const endpoints = OverlayMap.draft(prev?.endpoints);
    const changed = new Set<ServicePortName>();
    const removed = new Map<ServicePortName, ServicePort>();
    const removedEndpoints = new Map<ServicePortName, readonly Endpoint[]>();
    const rebuild = full ? new Set([...this.services.keys(), ...this.portsByService.keys(), ...dirtyServices]) : dirtyServices;
    for (const svcId of rebuild) {
      const oldPorts = (this.portsByService.get(svcId) ?? [])
        .map((n) => prev?.servicePorts.get(n))
        .filter((p): p is ServicePort => p !== undefined);
      const svc = this.services.get(svcId);
      const newPorts = svc ? servicePortsOf(svc) : [];
      const slices = [...(this.slicesByService.get(svcId)?.values() ?? [])];
      const newNames = new Set<ServicePortName>();
      for (const sp of newPorts) {
        newNames.add(sp.name);
        const eps = endpointsFor(sp, slices, this.nodeName);
        const oldSp = prev?.servicePorts.get(sp.name);
        const oldEps = prev?.endpoints.get(sp.name) ?? [];
        if (full || !oldSp || JSON.stringify(oldSp) !== JSON.stringify(sp) || JSON.stringify(oldEps) !== JSON.stringify(eps)) {
          changed.add(sp.name);
        }
        const gone = oldEps.filter((o) => !eps.some((e) => e.key === o.key));
        if (gone.length > 0) removedEndpoints.set(sp.name, gone);
        servicePorts.set(sp.name, sp);
        endpoints.set(sp.name, Object.freeze(eps));
      }
      for (const old of oldPorts) {
        if (newNames.has(old.name)) continue;
        servicePorts.delete(old.name);
        const oldEps = endpoints.get(old.name) ?? [];
        endpoints.delete(old.name);
        removed.set(old.name, old);
        if (oldEps.length > 0) removedEndpoints.set(old.name, oldEps);
        changed.add(old.name);
      }
      if (newNames.size > 0) this.portsByService.set(svcId, [...newNames]);
      else this.portsByService.delete(svcId);
    }
    const snap: Snapshot = Object.freeze({
      generation: (prev?.generation ?? 0) + 1,
      nodeName: this.nodeName,
      node: this.node,
      servicePorts: servicePorts.done(),
      endpoints: endpoints.done(),
      changed,
      removed,
      removedEndpoints,
      full,
      triggerTimes,
    });
    this.current = snap;
    return snap;
  }

  /** The service port names each service had in the current snapshot. */
  private readonly portsByService = new Map<NamespacedName, readonly ServicePortName[]>();
}
