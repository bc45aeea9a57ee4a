/**
 * The model as `iptables-restore --noflush` input, the way upstream writes it: per table, every
 * chain it rewrites declared `:NAME - [0:0]` (which creates or flushes it), then the rules, then
 * `-X` for chains to delete, then COMMIT; filter before nat. Chains not declared are left alone
 * by --noflush, which is what makes partial syncs possible. Deterministic and pure.
 */
import type { ServicePortName } from '../../core/ids.js';
import { ChunkedText } from '../../core/text.js';
import type { IptablesModel, TableName } from './model.js';
import { isServiceChainName } from './names.js';

const TABLES: readonly TableName[] = ['filter', 'nat'];

export type StaleChains = ReadonlyMap<TableName, readonly string[]>;

/**
 * A restore input, made chunk by chunk as it is written (see ChunkedText), with the count of
 * `-A` rules it writes per table (sync_proxy_rules_iptables_last).
 */
export class RestoreInput extends ChunkedText {
  constructor(produce: () => Iterable<string>, readonly written: Readonly<Record<TableName, number>>) {
    super(produce);
  }
}

interface TablePlan {
  readonly table: string;
  /** Chains to declare and fill, in order. */
  readonly write: readonly string[];
  /** Chains to flush and delete. */
  readonly remove: readonly string[];
  /** Lines to add at the end, before COMMIT. */
  readonly extra: readonly string[];
}

function* tableLines(model: IptablesModel, plan: TablePlan): Generator<string> {
  const chains = plan.table === 'filter' || plan.table === 'nat' ? model[plan.table].chains : undefined;
  yield `*${plan.table}`;
  for (const c of plan.write) yield `:${c} - [0:0]`;
  for (const c of plan.remove) yield `:${c} - [0:0]`;
  for (const c of plan.write) yield* chains?.get(c) ?? [];
  for (const c of plan.remove) yield `-X ${c}`;
  yield* plan.extra;
  yield 'COMMIT';
}

function restoreInput(model: IptablesModel, plans: readonly TablePlan[]): RestoreInput {
  const written = { filter: 0, nat: 0 };
  for (const plan of plans) {
    if (plan.table !== 'filter' && plan.table !== 'nat') continue;
    const chains = model[plan.table].chains;
    for (const c of plan.write) written[plan.table] += chains.get(c)?.length ?? 0;
  }
  return new RestoreInput(function* () {
    for (const plan of plans) yield* tableLines(model, plan);
  }, written);
}

export interface FullOptions {
  /** Chains to delete (e.g. per-service chains found in the kernel that the model no longer has). */
  readonly stale?: StaleChains;
  /**
   * Lines to add to a table's section before its COMMIT (canary chains, jumps from built-in
   * chains). A table the model does not have (mangle) gets a section of its own, first.
   */
  readonly extra?: ReadonlyMap<string, readonly string[]>;
  /** Only these of the model's tables (default: filter and nat). */
  readonly tables?: readonly TableName[];
}

/**
 * Every chain of the model, in model order. `stale` chains are deleted, but never chains the
 * model has.
 */
export function serializeFull(model: IptablesModel, options: FullOptions = {}): RestoreInput {
  const plans: TablePlan[] = [];
  for (const [table, extra] of options.extra ?? []) {
    if (table !== 'filter' && table !== 'nat' && extra.length > 0) plans.push({ table, write: [], remove: [], extra });
  }
  for (const table of TABLES) {
    if (options.tables !== undefined && !options.tables.includes(table)) continue;
    const chains = model[table].chains;
    const remove = [...new Set(options.stale?.get(table) ?? [])].filter((c) => !chains.has(c));
    plans.push({ table, write: [...chains.keys()], remove, extra: options.extra?.get(table) ?? [] });
  }
  return restoreInput(model, plans);
}

export interface PartialOptions {
  /** Service ports whose Service or endpoints changed since `previous` was applied. */
  readonly changed: ReadonlySet<ServicePortName>;
  /** The model the kernel holds now (the last one restored successfully). */
  readonly previous: IptablesModel;
}

/**
 * Upstream's partial sync: the top-level chains are always rewritten (they reference every
 * service), the per-service chains only of service ports that changed, and per-service chains
 * that `previous` had and the model does not are flushed and deleted.
 *
 * A port counts as changed if it is in `changed`, if its chain names differ from `previous`
 * (a caller's incomplete change set cannot leave a jump to a missing chain), or if large-cluster
 * mode flipped (upstream leaves stale comments then). Rule texts are not compared: a change of
 * render options needs a full sync.
 */
export function serializePartial(model: IptablesModel, opts: PartialOptions): RestoreInput {
  const rewrite = changedPorts(model, opts);
  const plans: TablePlan[] = [];
  for (const table of TABLES) {
    const chains = model[table].chains;
    // Every per-service chain of a model is owned by its service port, and nothing else is.
    const rewriteChains = new Set<string>();
    for (const spn of rewrite) for (const c of model.serviceChains.get(spn)?.[table] ?? []) rewriteChains.add(c);
    const write: string[] = [];
    for (const c of chains.keys()) if (!isServiceChainName(c) || rewriteChains.has(c)) write.push(c);
    // Chains to delete: of the previous ports whose chain list is not the very same now.
    const remove: string[] = [];
    for (const [spn, sc] of opts.previous.serviceChains) {
      if (model.serviceChains.get(spn) === sc) continue;
      for (const c of sc[table]) if (!chains.has(c)) remove.push(c);
    }
    plans.push({ table, write, remove, extra: [] });
  }
  return restoreInput(model, plans);
}

/** The service ports a partial sync must rewrite (see serializePartial). */
export function changedPorts(model: IptablesModel, opts: PartialOptions): Set<ServicePortName> {
  const out = new Set<ServicePortName>();
  // Large-cluster mode changes the comments in every endpoint rule: rewrite everything.
  const all = model.largeClusterMode !== opts.previous.largeClusterMode;
  for (const [spn, sc] of model.serviceChains) {
    if (all || opts.changed.has(spn)) {
      out.add(spn);
      continue;
    }
    const before = opts.previous.serviceChains.get(spn);
    // The same frozen list as before (the incremental renderer reused this port): unchanged.
    if (before === sc) continue;
    if (!before || !sameNames(sc.filter, before.filter, opts.previous.filter.chains) || !sameNames(sc.nat, before.nat, opts.previous.nat.chains)) {
      out.add(spn);
    }
  }
  return out;
}

/** Same chain list as before, and every chain still in the previous model. Rules are not compared (cost). */
function sameNames(now: readonly string[], before: readonly string[], had: ReadonlyMap<string, readonly string[]>): boolean {
  if (now.length !== before.length) return false;
  for (let i = 0; i < now.length; i++) {
    const name = now[i];
    if (name === undefined || name !== before[i] || !had.has(name)) return false;
  }
  return true;
}
