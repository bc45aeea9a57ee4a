/**
 * One table of the iptables model as a view over the pieces a render is made of, not a Map of
 * its own. At 10,000 services the nat table has ~130,000 chains; building a Map of them at every
 * sync was most of an endpoint change's render time (~45 ms of ~75) and the hash tables it left
 * for the next full garbage collection made a kproxy that ran many partial syncs grow (~2.5 MB per
 * sync), for a handful of changed chains. A partial sync reads the chains it writes from the
 * changed ports' pieces (`ports`); a lookup of any other name builds an index once per model,
 * which only full syncs and a rollback need.
 *
 * Every per-service chain's name is a hash of its own service port (upstream's names), so no two
 * ports declare the same chain; the index checks it anyway when it is built.
 */
import type { ServicePortName } from '../../core/ids.js';
import type { SortedPorts } from '../port-cache.js';
import type { TableName } from './model.js';

/**
 * The rules one piece of a render writes into one table: the fixed header or trailer, or one
 * service port. `top*` hold its rules for the shared top-level chains (appended, piece after
 * piece, in the model's order); `own*` the chains it declares, with all their rules. A render is
 * the concatenation of its pieces, which is what lets a partial sync re-render only the service
 * ports that changed and reuse every other port's piece. Parallel arrays rather than Maps: a
 * Map costs ~300 bytes even when small, and every service port keeps two pieces.
 */
export interface PieceRules {
  readonly topChains: readonly string[];
  readonly topRules: readonly (readonly string[])[];
  /** In declaration order (also the port's ServiceChains for the table). */
  readonly ownChains: readonly string[];
  readonly ownRules: readonly (readonly string[])[];
}

export class TableChains implements ReadonlyMap<string, readonly string[]> {
  /** The top-level chains with every piece's rules for them, in order, then the header's own chains. */
  readonly fixed: ReadonlyMap<string, readonly string[]>;
  readonly size: number;
  /** Rules in all chains (sync_proxy_rules_iptables_total). */
  readonly rules: number;
  #index: Map<string, readonly string[]> | undefined;

  constructor(
    readonly table: TableName,
    topLevel: readonly string[],
    header: PieceRules,
    /** Each service port's piece, in order. */
    readonly ports: SortedPorts<PieceRules>,
    trailer: PieceRules,
  ) {
    if (trailer.ownChains.length > 0) throw new Error(`iptables render: the trailer of ${table} declares chains`);
    const pieces = [header, ...ports.items, trailer];
    const top = new Map<string, string[]>();
    let size = topLevel.length;
    let rules = 0;
    for (const c of topLevel) top.set(c, []);
    for (const p of pieces) {
      for (let i = 0; i < p.topChains.length; i++) {
        const list = top.get(p.topChains[i] as string);
        const add = p.topRules[i] as readonly string[];
        if (list === undefined) throw new Error(`iptables render: rule for undeclared chain ${table}/${p.topChains[i]}`);
        for (const r of add) list.push(r);
        rules += add.length;
      }
      size += p.ownChains.length;
      for (const r of p.ownRules) rules += r.length;
    }
    const fixed = new Map<string, readonly string[]>();
    for (const [c, list] of top) fixed.set(c, Object.freeze(list));
    header.ownChains.forEach((c, i) => {
      if (fixed.has(c)) throw new Error(`iptables render: chain ${table}/${c} declared twice`);
      fixed.set(c, header.ownRules[i] as readonly string[]);
    });
    this.fixed = fixed;
    this.size = size;
    this.rules = rules;
  }

  get(name: string): readonly string[] | undefined {
    return this.fixed.get(name) ?? this.index().get(name);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** The service ports' chains by name, made at the first lookup of one (full syncs, rollback). */
  private index(): ReadonlyMap<string, readonly string[]> {
    if (this.#index !== undefined) return this.#index;
    const index = new Map<string, readonly string[]>();
    for (const p of this.ports.items) {
      p.ownChains.forEach((c, i) => {
        if (index.has(c) || this.fixed.has(c)) throw new Error(`iptables render: chain ${this.table}/${c} declared twice`);
        index.set(c, p.ownRules[i] as readonly string[]);
      });
    }
    return (this.#index = index);
  }

  /** Every chain in order: the fixed ones, then each service port's own. */
  forEach(fn: (rules: readonly string[], name: string, map: ReadonlyMap<string, readonly string[]>) => void, thisArg?: unknown): void {
    this.fixed.forEach((rules, name) => fn.call(thisArg, rules, name, this));
    for (const p of this.ports.items) {
      for (let i = 0; i < p.ownChains.length; i++) fn.call(thisArg, p.ownRules[i] as readonly string[], p.ownChains[i] as string, this);
    }
  }

  *entries(): MapIterator<[string, readonly string[]]> {
    yield* this.fixed;
    for (const p of this.ports.items) {
      for (let i = 0; i < p.ownChains.length; i++) yield [p.ownChains[i] as string, p.ownRules[i] as readonly string[]];
    }
  }

  *keys(): MapIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): MapIterator<readonly string[]> {
    for (const [, rules] of this.entries()) yield rules;
  }

  [Symbol.iterator](): MapIterator<[string, readonly string[]]> {
    return this.entries();
  }

  /** The service port's own chains in this table (none for a port the model does not have). */
  own(spn: ServicePortName): PieceRules | undefined {
    return this.ports.get(spn);
  }
}
