/**
 * An immutable map made from another by a few changes, without copying it: the snapshot's maps
 * of service ports and endpoints (10,000 entries each at 10,000 services) change in a handful of
 * entries per sync, and copying both at every sync was ~4 MB of hash tables, most of them kept
 * until the next full garbage collection. Behaves exactly as `new Map(previous)` followed by the
 * same set and delete calls, iteration order included (a key set again keeps its place; a key
 * added, or deleted and added again, goes to the end). Once the changes pile up to an eighth of
 * the base, the next draft starts from a plain Map again, so lookups stay at most three Map
 * lookups and the overlay's size stays bounded (as do the replaced values the base still holds
 * until then: at most an eighth of its entries).
 */

const GONE: unique symbol = Symbol('gone');
/** A base key's new value, or GONE. */
type Change<V> = V | typeof GONE;

/** A key's value in an overlay: the tail's, else the change's, else the base's. */
function lookup<K, V>(base: ReadonlyMap<K, V>, over: ReadonlyMap<K, Change<V>>, tail: ReadonlyMap<K, V>, key: K): V | undefined {
  const t = tail.get(key);
  if (t !== undefined || tail.has(key)) return t;
  if (over.has(key)) {
    const v = over.get(key);
    return v === GONE ? undefined : v;
  }
  return base.get(key);
}

function present<K, V>(base: ReadonlyMap<K, V>, over: ReadonlyMap<K, Change<V>>, tail: ReadonlyMap<K, V>, key: K): boolean {
  if (tail.has(key)) return true;
  if (over.has(key)) return over.get(key) !== GONE;
  return base.has(key);
}

/** The read side: a base map never changed, changes to its keys, and keys after it. */
export class OverlayMap<K, V> implements ReadonlyMap<K, V> {
  constructor(
    /** Never changed: later maps share it. */
    readonly base: ReadonlyMap<K, V>,
    /** Base keys whose value changed in place, or that are gone (GONE; again in `tail` if added back). */
    readonly over: ReadonlyMap<K, Change<V>>,
    /** Keys after the base's, in the order they were added. */
    readonly tail: ReadonlyMap<K, V>,
    readonly size: number,
  ) {}

  get(key: K): V | undefined {
    return lookup(this.base, this.over, this.tail, key);
  }

  has(key: K): boolean {
    return present(this.base, this.over, this.tail, key);
  }

  *entries(): MapIterator<[K, V]> {
    for (const [k, v] of this.base) {
      if (!this.over.has(k)) yield [k, v];
      else {
        const c = this.over.get(k) as Change<V>;
        if (c !== GONE) yield [k, c];
      }
    }
    yield* this.tail.entries();
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    this.base.forEach((v, k) => {
      if (!this.over.has(k)) fn.call(thisArg, v, k, this);
      else {
        const c = this.over.get(k) as Change<V>;
        if (c !== GONE) fn.call(thisArg, c, k, this);
      }
    });
    this.tail.forEach((v, k) => fn.call(thisArg, v, k, this));
  }

  /** A draft that starts from `from` (as `new Map(from)` would). */
  static draft<K, V>(from: ReadonlyMap<K, V> | undefined): OverlayDraft<K, V> {
    return new OverlayDraft(from);
  }

}

/** The write side: set and delete as on a copy, then done() for the immutable result. */
export class OverlayDraft<K, V> {
  private readonly base: ReadonlyMap<K, V>;
  private readonly over: Map<K, Change<V>>;
  private readonly tail: Map<K, V>;
  private count: number;

  constructor(from: ReadonlyMap<K, V> | undefined) {
    if (from instanceof OverlayMap && !OverlayDraft.piledUp(from)) {
      this.base = from.base;
      this.over = new Map(from.over);
      this.tail = new Map(from.tail);
    } else {
      this.base = from instanceof Map ? from : new Map(from);
      this.over = new Map();
      this.tail = new Map();
    }
    this.count = from?.size ?? 0;
  }

  /** Changes of an eighth of the base or more: start from a plain Map. */
  private static piledUp<K, V>(m: OverlayMap<K, V>): boolean {
    return (m.over.size + m.tail.size) * 8 >= Math.max(m.base.size, 64);
  }

  private present(key: K): boolean {
    return present(this.base, this.over, this.tail, key);
  }

  set(key: K, value: V): void {
    if (this.tail.has(key)) this.tail.set(key, value);
    else if (this.present(key)) this.over.set(key, value);
    else {
      // Absent now: it goes to the end (a base key deleted earlier stays GONE in its old place).
      this.tail.set(key, value);
      this.count++;
    }
  }

  delete(key: K): void {
    if (!this.present(key)) return;
    if (this.tail.has(key)) this.tail.delete(key);
    else this.over.set(key, GONE);
    this.count--;
  }

  get(key: K): V | undefined {
    return lookup(this.base, this.over, this.tail, key);
  }

  /** The result; this draft must not be used after. */
  done(): ReadonlyMap<K, V> {
    // Nothing before the new keys: they are the whole map.
    if (this.base.size === 0 && this.over.size === 0) return this.tail;
    return new OverlayMap(this.base, this.over, this.tail, this.count);
  }
}
