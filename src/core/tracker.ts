/**
 * Change trackers (upstream's ServiceChangeTracker / EndpointsChangeTracker): record
 * {previous, current} per object between syncs and drop changes that net to nothing.
 */
import type { ApiObject } from './objects.js';

export interface Change<T> {
  /** The object as the last sync saw it; undefined if it did not exist. */
  readonly previous: T | undefined;
  /** The object now; undefined if it was deleted. */
  readonly current: T | undefined;
}

/** Structural equality ignoring `origin` (moving an object between files is no change). */
export function sameObject(a: ApiObject | undefined, b: ApiObject | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return stableJSON(a) === stableJSON(b);
}

function stableJSON(o: ApiObject): string {
  return JSON.stringify(o, (k, v: unknown) => (k === 'origin' ? undefined : v));
}

export class ChangeTracker<K, T extends ApiObject> {
  private pending = new Map<K, { previous: T | undefined; current: T | undefined }>();

  /** Records a transition; returns true if there is now a pending (non-null) change for key. */
  record(key: K, previous: T | undefined, current: T | undefined): boolean {
    const existing = this.pending.get(key);
    const base = existing ? existing.previous : previous;
    if (sameObject(base, current)) {
      this.pending.delete(key);
      return false;
    }
    this.pending.set(key, { previous: base, current });
    return true;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Takes every pending change, leaving the tracker empty. */
  drain(): Map<K, Change<T>> {
    const out = this.pending;
    this.pending = new Map();
    return out;
  }
}
