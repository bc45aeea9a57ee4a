/**
 * Deterministic `nft -f -` transactions for a model. One main transaction per sync, applied
 * atomically by the kernel: it either all happens or none of it does; staging transactions
 * ahead of it (serializeStages) write only chains and sets nothing refers to yet.
 *
 * Stale per-service chains are flushed, not deleted: with kernels before 6.2, deleting a map
 * element that points at a chain leaves the chain "in use" for a short while, so deleting the
 * chain in the same transaction can fail. Like upstream, the caller deletes them in a later
 * transaction (`serializeDeleteStale`) once a second or so has passed.
 *
 * Rules are written as `add chain … { rule … }` blocks, never `add rule` lines, and a partial
 * transaction declares every set and map its rules name. nft (1.0.6) then loads only the table
 * into its cache: an `add rule`, `add element` or `delete` line, or the table declared with its
 * comment, makes it first dump every chain and set of every table, which at 10,000 services takes the kernel about a second (its chain
 * dump restarts its walk of the table's list at each chunk). A partial transaction of an
 * endpoint change therefore has no delete and no element line: the affinity sets it stops
 * using are left to the same later deletion as stale chains.
 */
import type { NftChain, NftElement, NftFamily, NftSet, NftablesModel, ServicePortObjects } from './model.js';
import type { ServicePortName } from '../../core/ids.js';
import { ChunkedText } from '../../core/text.js';
import { quote } from './render.js';
import { TABLE, isAffinitySetName, isServiceChainName, servicePortOfName } from './names.js';
import { PortIndexed } from './port-indexed.js';
import { forEachChangedPort, SortedPorts } from '../port-cache.js';

/** An `nft -f -` input, made chunk by chunk as it is written (see ChunkedText). */
export class NftTransaction extends ChunkedText {
  constructor(
    produce: () => Iterable<string>,
    /**
     * Per-service chains this transaction flushed, and affinity sets it left, because nothing uses
     * them any more: delete them later (deleteStaleLines).
     */
    readonly stale: readonly string[],
  ) {
    super(produce);
  }
}

const TABLE_COMMENT = 'rules for kube-proxy';

function prefix(model: { readonly family: NftFamily; readonly table: string }): string {
  return `${model.family} ${model.table}`;
}

function chainDecl(p: string, c: NftChain): string {
  const parts: string[] = [];
  if (c.base) parts.push(`type ${c.base.type} hook ${c.base.hook} priority ${c.base.priority} ;`);
  if (c.comment !== undefined) parts.push(`comment ${quote(c.comment)} ;`);
  return parts.length === 0 ? `add chain ${p} ${c.name}` : `add chain ${p} ${c.name} { ${parts.join(' ')} }`;
}

function setDecl(p: string, s: NftSet): string {
  const parts = [`type ${s.type} ;`];
  if (s.flags && s.flags.length > 0) parts.push(`flags ${s.flags.join(',')} ;`);
  if (s.timeoutSeconds !== undefined) parts.push(`timeout ${s.timeoutSeconds}s ;`);
  if (s.comment !== undefined) parts.push(`comment ${quote(s.comment)} ;`);
  return `add ${s.kind} ${p} ${s.name} { ${parts.join(' ')} }`;
}

function elementText(e: NftElement): string {
  let t = e.key;
  if (e.comment !== undefined) t += ` comment ${quote(e.comment)}`;
  if (e.value !== undefined) t += ` : ${e.value}`;
  return t;
}

function addElement(p: string, set: NftSet, e: NftElement): string {
  return `add element ${p} ${set.name} { ${elementText(e)} }`;
}

/** A chain's rules, one per line, as an `add chain` block (nothing for a chain without rules). */
function* ruleBlock(p: string, c: NftChain): Generator<string> {
  if (c.rules.length === 0) return;
  yield `add chain ${p} ${c.name} {`;
  for (const r of c.rules) yield `\t${r}`;
  yield '}';
}

/** The sets and maps (`@name`) that a chain's rules refer to. */
function* referencedSets(c: NftChain): Generator<string> {
  for (const r of c.rules) for (const m of r.matchAll(/@([^\s{}]+)/g)) if (m[1]) yield m[1];
}

function sameChain(a: NftChain, b: NftChain): boolean {
  if (a.rules.length !== b.rules.length || a.comment !== b.comment) return false;
  if (JSON.stringify(a.base) !== JSON.stringify(b.base)) return false;
  return a.rules.every((r, i) => r === b.rules[i]);
}

function sameElement(a: NftElement, b: NftElement): boolean {
  return a.key === b.key && a.value === b.value && a.comment === b.comment;
}

/** Chains and sets that staging transactions made ahead of a sync's main one: the main one leaves them alone. */
export interface StagedObjects {
  readonly chains: ReadonlySet<string>;
  readonly sets: ReadonlySet<string>;
}

const NOTHING_STAGED: StagedObjects = Object.freeze({ chains: new Set<string>(), sets: new Set<string>() });

/** Staging transactions to run, in order, before the main one, and what they wrote. */
export interface Stages {
  readonly transactions: readonly NftTransaction[];
  readonly staged: StagedObjects;
}

/**
 * The kernel makes one big transaction cost about (its rules with sets) × (its size): every rule
 * that binds an anonymous set (each service chain's `numgen … vmap { }`) walks the whole list of
 * the transaction's pending changes. So the chains and affinity sets of service ports that no
 * traffic can reach yet (`ports`: none of their chains exists, or only as left unreferenced by an
 * earlier failed sync) are written ahead, in transactions of about `maxLines` lines each; the
 * main transaction then leaves them alone and makes everything traffic sees (maps, their
 * elements, rewritten chains, hooks) change at once, as before. Until it commits, what the stages
 * wrote is unreferenced: invisible to packets, and a later full sync rewrites or removes it.
 * Each stage also declares (without flushing) the table and the shared chains and sets the
 * ports' rules may name. Below `maxLines` in all, there are no stages.
 */
export function serializeStages(model: NftablesModel, ports: Iterable<ServicePortObjects>, maxLines: number): Stages {
  const batches: ServicePortObjects[][] = [];
  let batch: ServicePortObjects[] = [];
  let lines = 0;
  for (const port of ports) {
    batch.push(port);
    lines += port.affinitySets.length;
    for (const c of port.chainObjects) lines += 2 + c.rules.length;
    if (lines >= maxLines) {
      batches.push(batch);
      batch = [];
      lines = 0;
    }
  }
  // No batch filled: all of it is below one transaction's worth.
  if (batches.length === 0) return { transactions: [], staged: NOTHING_STAGED };
  if (batch.length > 0) batches.push(batch);
  const p = prefix(model);
  const all = batches.flat();
  const chains = new Set(all.flatMap((port) => port.chains));
  const sets = new Set(all.flatMap((port) => port.affinitySets));
  // The shared chains and sets the ports' rules may name, declared by every stage: found once,
  // not by each stage walking every chain again.
  const shared: string[] = [];
  for (const c of model.chains.values()) if (!c.base && !isServiceChainName(c.name)) shared.push(chainDecl(p, c));
  for (const s of model.sets.values()) if (!isAffinitySetName(s.name) && !model.absentSets.includes(s.name)) shared.push(setDecl(p, s));
  const transactions = batches.map((b, i) => new NftTransaction(function* () {
    // The first stage may create the table, so it gives the comment; the others do not, as a
    // table declared with a comment makes nft load every chain and set first.
    yield i === 0 ? `add table ${p} { comment ${quote(TABLE_COMMENT)} ; }` : `add table ${p}`;
    yield* shared;
    const own = b.flatMap((port) => port.chainObjects);
    for (const port of b) for (const set of port.setObjects) yield setDecl(p, set);
    for (const c of own) {
      yield chainDecl(p, c);
      yield `flush chain ${p} ${c.name}`;
    }
    for (const c of own) yield* ruleBlock(p, c);
  }, []));
  return { transactions, staged: { chains, sets } };
}

export interface FullSyncOptions {
  /** Chains that exist now (from `nft list chains`, or the previous model): unused per-service ones get flushed. */
  readonly existingChains?: Iterable<string>;
  /** Sets that exist now: unused affinity-* sets get deleted (no element refers to them). */
  readonly existingSets?: Iterable<string>;
  /** Written already by staging transactions (serializeStages). */
  readonly staged?: StagedObjects | undefined;
}

/**
 * Upstream's full sync: add the table, add and flush every chain, add every set and map and
 * flush the shared ones (affinity sets keep their entries), write every rule and element, then
 * flush stale per-service chains and delete stale affinity sets.
 */
export function serializeFull(model: NftablesModel, options: FullSyncOptions = {}): NftTransaction {
  const p = prefix(model);
  const staleChains: string[] = [];
  for (const c of new Set(options.existingChains ?? [])) {
    if (isServiceChainName(c) && !model.chains.has(c)) staleChains.push(c);
  }
  const staleSets: string[] = [];
  for (const s of new Set(options.existingSets ?? [])) {
    if (isAffinitySetName(s) && !model.sets.has(s)) staleSets.push(s);
  }
  const staged = options.staged ?? NOTHING_STAGED;
  return new NftTransaction(function* () {
    yield `add table ${p} { comment ${quote(TABLE_COMMENT)} ; }`;
    for (const c of model.chains.values()) {
      if (staged.chains.has(c.name)) continue;
      yield chainDecl(p, c);
      yield `flush chain ${p} ${c.name}`;
    }
    for (const s of model.sets.values()) {
      if (staged.sets.has(s.name)) continue;
      yield setDecl(p, s);
      if (model.absentSets.includes(s.name)) yield `delete ${s.kind} ${p} ${s.name}`;
      else if (!isAffinitySetName(s.name)) yield `flush ${s.kind} ${p} ${s.name}`;
    }
    for (const c of model.chains.values()) if (!staged.chains.has(c.name)) yield* ruleBlock(p, c);
    for (const [name, elems] of model.elements) {
      const s = model.sets.get(name);
      if (!s || model.absentSets.includes(name)) continue;
      for (const e of elems) yield addElement(p, s, e);
    }
    for (const c of staleChains) yield `flush chain ${p} ${c}`;
    for (const s of staleSets) yield `delete set ${p} ${s}`;
  }, Object.freeze(staleChains));
}

export interface PartialSyncOptions {
  /** The model that is installed now (the last successful sync's). */
  readonly previous: NftablesModel;
  /** Service ports whose chains must be rewritten even if they look unchanged (the snapshot's `changed`). */
  readonly changed?: Iterable<ServicePortName>;
  /** Further chains to rewrite even if they look unchanged (e.g. the fixed chains, to repair an outside flush). */
  readonly rewriteChains?: Iterable<string>;
  /** Written already by staging transactions (serializeStages). */
  readonly staged?: StagedObjects | undefined;
}

/**
 * Only what differs from `previous`: chains that are new, changed, or belong to a changed service
 * port are added, flushed and rewritten; set and map elements are diffed (deleted and added one
 * by one, never flushed); per-service chains no longer used are flushed, and returned with the
 * affinity sets no longer used as `stale`, for a later deletion. Identical models give nothing.
 * There is no `add table`: a table deleted by someone else makes the transaction fail, and then
 * a full sync follows (the table's comment would also make nft load every chain and set).
 * A set whose definition changed is deleted and re-added (its entries are lost, as a new
 * timeout needs). A change of family or of a base chain's hook needs a full sync.
 */
export function serializePartial(model: NftablesModel, options: PartialSyncOptions): NftTransaction {
  const prev = options.previous;
  if (prev.family !== model.family || prev.table !== model.table) {
    throw new Error(`nftables partial sync: previous model is for ${prefix(prev)}, not ${prefix(model)}`);
  }
  const p = prefix(model);
  const staged = options.staged ?? NOTHING_STAGED;
  const forced = new Set<string>();
  const forcedPorts = new Set<ServicePortName>();
  for (const spn of options.changed ?? []) {
    forcedPorts.add(spn);
    for (const c of model.servicePorts.get(spn)?.chains ?? []) forced.add(c);
  }
  for (const c of options.rewriteChains ?? []) {
    if (!model.chains.has(c)) continue;
    forced.add(c);
    const spn = servicePortOfName(c);
    if (spn !== undefined) forcedPorts.add(spn);
  }
  const scope = scopeOf(model, prev, forcedPorts);

  // Sets whose definition changed (an affinity timeout): the kernel cannot change one in place, so
  // they are deleted and re-added after every chain that refers to them has been flushed.
  const redefined: NftSet[] = [];
  for (const s of scope.sets) {
    const old = prev.sets.get(s.name);
    if (old !== undefined && old !== s && JSON.stringify(old) !== JSON.stringify(s)) redefined.push(s);
  }
  if (redefined.length > 0) {
    const names = new Set(redefined.map((s) => s.name));
    for (const c of scope.chains) for (const n of referencedSets(c)) if (names.has(n)) forced.add(c.name);
  }

  // What to write is decided here; the text is made as it is written.
  // Sets and maps that are new, or that must vanish now.
  const setLines: string[] = [];
  /** The sets setLines or `redefined` declare. */
  const declared = new Set(redefined.map((s) => s.name));
  const declare = (s: NftSet): void => {
    setLines.push(setDecl(p, s));
    declared.add(s.name);
  };
  for (const s of scope.sets) {
    if (staged.sets.has(s.name)) continue;
    const wasAbsent = !prev.sets.has(s.name) || prev.absentSets.includes(s.name);
    const isAbsent = model.absentSets.includes(s.name);
    if (!prev.sets.has(s.name)) declare(s);
    if (isAbsent && !wasAbsent) {
      declare(s);
      setLines.push(`delete ${s.kind} ${p} ${s.name}`);
    } else if (!isAbsent && wasAbsent && prev.sets.has(s.name)) declare(s);
  }

  // Chains: declare all new ones first (rules and elements may refer to any of them).
  const rewrite: NftChain[] = [];
  for (const c of scope.chains) {
    if (staged.chains.has(c.name)) continue;
    const old = prev.chains.get(c.name);
    // The incremental renderer reuses unchanged ports' chain objects: identity means unchanged.
    if (old === c && !forced.has(c.name)) continue;
    if (old === undefined || forced.has(c.name) || !sameChain(old, c)) rewrite.push(c);
  }

  // Elements: deletions, then additions (a changed value is a delete and an add).
  const deletes: { readonly set: string; readonly e: NftElement }[] = [];
  const adds: { readonly set: NftSet; readonly e: NftElement }[] = [];
  for (const [name, elems] of model.elements) {
    const s = model.sets.get(name);
    if (!s || model.absentSets.includes(name)) continue;
    const all = prev.absentSets.includes(name) ? [] : prev.elements.get(name) ?? [];
    // Only the stretch between the common head and tail (same element objects, as the
    // incremental renderer reuses them) can differ: a key in a common head or tail is in both
    // heads or both tails, so it is in neither middle.
    let head = 0;
    while (head < all.length && head < elems.length && all[head] === elems[head]) head++;
    let tail = 0;
    while (tail < all.length - head && tail < elems.length - head && all[all.length - 1 - tail] === elems[elems.length - 1 - tail]) tail++;
    const before = all.slice(head, all.length - tail);
    const now = elems.slice(head, elems.length - tail);
    const beforeByKey = new Map(before.map((e) => [e.key, e]));
    const nowByKey = new Map(now.map((e) => [e.key, e]));
    for (const e of before) {
      const now = nowByKey.get(e.key);
      if (now === undefined || !sameElement(now, e)) deletes.push({ set: name, e });
    }
    for (const e of now) {
      const was = beforeByKey.get(e.key);
      if (was === undefined || !sameElement(was, e)) adds.push({ set: s, e });
    }
  }

  // Every set the rewritten rules name is declared (a no-op for one that exists), so that nft
  // needs no cache of the table's sets to resolve them.
  for (const c of rewrite) {
    for (const name of referencedSets(c)) {
      const s = model.sets.get(name);
      if (s && !declared.has(name) && !model.absentSets.includes(name)) declare(s);
    }
  }

  // Chains flushed now and affinity sets no rule uses any more: the caller deletes them later.
  const stale: string[] = [];
  for (const c of scope.previousChains) if (!model.chains.has(c) && isServiceChainName(c)) stale.push(c);
  for (const s of scope.previousSets) if (!model.sets.has(s) && isAffinitySetName(s)) stale.push(s);

  return new NftTransaction(function* () {
    yield* setLines;
    for (const c of rewrite) {
      yield chainDecl(p, c);
      yield `flush chain ${p} ${c.name}`;
    }
    for (const s of redefined) {
      yield `delete ${s.kind} ${p} ${s.name}`;
      yield setDecl(p, s);
    }
    for (const c of rewrite) yield* ruleBlock(p, c);
    for (const d of deletes) yield `delete element ${p} ${d.set} { ${d.e.key} }`;
    for (const a of adds) yield addElement(p, a.set, a.e);
    for (const c of stale) if (!isAffinitySetName(c)) yield `flush chain ${p} ${c}`;
  }, Object.freeze(stale));
}

/** The chains and sets a partial sync must compare, in `model` and (names) in `previous`, in their order; each may be walked more than once. */
interface Scope {
  readonly chains: Iterable<NftChain>;
  readonly sets: Iterable<NftSet>;
  readonly previousChains: Iterable<string>;
  readonly previousSets: Iterable<string>;
}

/**
 * Every chain and set of both models; or, when both are views over their service ports
 * (PortIndexed: no name is two ports'), the fixed ones and those of the ports whose objects
 * differ between the two models or that are forced. Any other port's chains and sets are the
 * very same objects in both, which the comparison would pass over: at 10,000 services this is a
 * few dozen objects instead of 110,000 lookups.
 */
function scopeOf(model: NftablesModel, prev: NftablesModel, forcedPorts: ReadonlySet<ServicePortName>): Scope {
  const { chains, sets } = model;
  const { chains: prevChains, sets: prevSets } = prev;
  if (!(chains instanceof PortIndexed && sets instanceof PortIndexed && prevChains instanceof PortIndexed && prevSets instanceof PortIndexed)) {
    return {
      chains: { [Symbol.iterator]: () => chains.values() },
      sets: { [Symbol.iterator]: () => sets.values() },
      previousChains: { [Symbol.iterator]: () => prevChains.keys() },
      previousSets: { [Symbol.iterator]: () => prevSets.keys() },
    };
  }
  const { now, before } = changedPorts(model.servicePorts, prev.servicePorts, forcedPorts);
  return {
    chains: [...chains.fixed.values(), ...now.flatMap((p) => p.chainObjects)],
    sets: [...sets.fixed.values(), ...now.flatMap((p) => p.setObjects)],
    previousChains: [...prevChains.fixed.keys(), ...before.flatMap((p) => p.chains)],
    previousSets: [...prevSets.fixed.keys(), ...before.flatMap((p) => p.affinitySets)],
  };
}

/**
 * The ports of `model` whose objects are not `prev`'s (or that are forced), in model order, and
 * the ports of `prev` whose objects are not `model`'s, in prev order. Two sorted views are
 * walked side by side; other maps are looked up.
 */
function changedPorts(model: ReadonlyMap<ServicePortName, ServicePortObjects>, prev: ReadonlyMap<ServicePortName, ServicePortObjects>, forced: ReadonlySet<ServicePortName>): { now: ServicePortObjects[]; before: ServicePortObjects[] } {
  const now: ServicePortObjects[] = [];
  const before: ServicePortObjects[] = [];
  if (!(model instanceof SortedPorts && prev instanceof SortedPorts)) {
    model.forEach((p, spn) => {
      if (p !== prev.get(spn) || forced.has(spn)) now.push(p);
    });
    prev.forEach((p, spn) => {
      if (p !== model.get(spn)) before.push(p);
    });
    return { now, before };
  }
  forEachChangedPort(model, prev, forced, (_, p, q) => {
    if (p !== undefined) now.push(p);
    if (q !== undefined && p !== q) before.push(q);
  });
  return { now, before };
}

/** The lines of the later transaction that deletes the chains and sets syncs left as stale. */
export function* deleteStaleLines(family: NftFamily, names: Iterable<string>): Generator<string> {
  for (const n of names) yield `delete ${isAffinitySetName(n) ? 'set' : 'chain'} ${family} ${TABLE} ${n}`;
}

/** The later transaction that deletes the chains and sets syncs left as stale. Empty text for none. */
export function serializeDeleteStale(family: NftFamily, names: Iterable<string>): string {
  const lines = [...deleteStaleLines(family, names)];
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

/** Removes everything kube-proxy installed for a family; `add` first makes it idempotent. */
export function serializeCleanup(family: NftFamily): string {
  return `add table ${family} ${TABLE}\ndelete table ${family} ${TABLE}\n`;
}

/**
 * Of the chains and sets waiting for deletion, those the model does not use again (one left as
 * stale may come back before its deletion, as upstream's staleChains bookkeeping allows for).
 */
export function stillStale(model: NftablesModel, pending: Iterable<string>): string[] {
  return [...new Set(pending)].filter((n) => !model.chains.has(n) && !model.sets.has(n));
}
