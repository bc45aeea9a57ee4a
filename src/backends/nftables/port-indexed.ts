/**
 * A model's chains or sets as a view over its parts, not a Map of its own: the fixed ones, then
 * each service port's, in order. At 10,000 services a model has 110,000 chains; building a Map of
 * them at every sync was most of what an endpoint change allocated (~11 MB of hash tables, left
 * for the next full garbage collection) and a third of its render time, for a handful of changed
 * chains. A lookup finds the service port the name spells out (servicePortOfName), then the name
 * among that port's few objects; the renderer uses this view only when every port's names give
 * it back (spellsServicePort), so no two ports can share a name and a lookup misses only what the
 * model does not have.
 */
import type { ServicePortName } from '../../core/ids.js';
import type { NftChain, NftSet, ServicePortObjects } from './model.js';
import { servicePortOfName } from './names.js';

type Kind = 'chains' | 'sets';

function namesOf(p: ServicePortObjects, kind: Kind): readonly string[] {
  return kind === 'chains' ? p.chains : p.affinitySets;
}

function objectsOf<T>(p: ServicePortObjects, kind: Kind): readonly T[] {
  return (kind === 'chains' ? p.chainObjects : p.setObjects) as unknown as readonly T[];
}

export class PortIndexed<T extends NftChain | NftSet> implements ReadonlyMap<string, T> {
  constructor(
    /** The objects that are no service port's, in order. */
    readonly fixed: ReadonlyMap<string, T>,
    /** The service ports, in order. */
    readonly ports: ReadonlyMap<ServicePortName, ServicePortObjects>,
    private readonly kind: Kind,
    readonly size: number,
  ) {}

  get(name: string): T | undefined {
    const f = this.fixed.get(name);
    if (f !== undefined) return f;
    const spn = servicePortOfName(name);
    const p = spn === undefined ? undefined : this.ports.get(spn);
    if (p === undefined) return undefined;
    const i = namesOf(p, this.kind).indexOf(name);
    return i < 0 ? undefined : objectsOf<T>(p, this.kind)[i];
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  values(): MapIterator<T> {
    return this.all().values();
  }

  keys(): MapIterator<string> {
    return this.all().map((v) => v.name).values();
  }

  entries(): MapIterator<[string, T]> {
    return this.all().map((v): [string, T] => [v.name, v]).values();
  }

  /** Every object in order, made once per view (a full sync walks them several times). */
  #all: readonly T[] | undefined;
  private all(): readonly T[] {
    if (this.#all !== undefined) return this.#all;
    const out = [...this.fixed.values()];
    for (const p of this.ports.values()) for (const v of objectsOf<T>(p, this.kind)) out.push(v);
    return (this.#all = out);
  }

  [Symbol.iterator](): MapIterator<[string, T]> {
    return this.entries();
  }

  forEach(fn: (value: T, key: string, map: ReadonlyMap<string, T>) => void, thisArg?: unknown): void {
    for (const v of this.all()) fn.call(thisArg, v, v.name, this);
  }
}
