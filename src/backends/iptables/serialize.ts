/**
 * The model as `iptables-restore --noflush` input, the way upstream writes it: per table, every
 * chain it rewrites declared `:NAME - [0:0]` (which creates or flushes it), then the rules, then
 * `-X` for chains to delete, then COMMIT; filter before nat. Chains not declared are left alone
 * by --noflush, which is what makes partial syncs possible. Deterministic and pure.
 */
import type { ServicePortName } from '../../core/ids.js';
import { ChunkedText } from '../../core/text.js';
import type { IptablesModel, RenderedIptablesModel, ServiceChains, TableName } from './model.js';
import { forEachChangedPort } from '../port-cache.js';

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
  /** Chains to declare and fill, in order, and their rules at the same indexes. */
  readonly write: readonly string[];
  readonly rules: readonly (readonly string[])[];
  /** Chains to flush and delete. */
  readonly remove: readonly string[];
  /** Lines to add at the end, before COMMIT. */
  readonly extra: readonly string[];
}

function* tableLines(plan: TablePlan): Generator<string> {
  yield `*${plan.table}`;
  for (const c of plan.write) yield `:${c} - [0:0]`;
  for (const c of plan.remove) yield `:${c} - [0:0]`;
  for (const r of plan.rules) yield* r;
  for (const c of plan.remove) yield `-X ${c}`;
  yield* plan.extra;
  yield 'COMMIT';
}

function restoreInput(plans: readonly TablePlan[]): RestoreInput {
  const written = { filter: 0, nat: 0 };
  for (const plan of plans) {
    if (plan.table !== 'filter' && plan.table !== 'nat') continue;
    for (const r of plan.rules) written[plan.table] += r.length;
  }
  return new RestoreInput(function* () {
    for (const plan of plans) yield* tableLines(plan);
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
    if (table !== 'filter' && table !== 'nat' && extra.length > 0) plans.push({ table, write: [], rules: [], remove: [], extra });
  }
  for (const table of TABLES) {
    if (options.tables !== undefined && !options.tables.includes(table)) continue;
    const chains = model[table].chains;
    const remove = [...new Set(options.stale?.get(table) ?? [])].filter((c) => !chains.has(c));
    const write: string[] = [];
    const rules: (readonly string[])[] = [];
    chains.forEach((r, c) => {
      write.push(c);
      rules.push(r);
    });
    plans.push({ table, write, rules, remove, extra: options.extra?.get(table) ?? [] });
  }
  return restoreInput(plans);
}

export interface PartialOptions {
  /** Service ports whose Service or endpoints changed since `previous` was applied. */
  readonly changed: ReadonlySet<ServicePortName>;
  /** The model the kernel holds now (the last one restored successfully). */
  readonly previous: RenderedIptablesModel;
}

/**
 * Upstream's partial sync: the top-level chains are always rewritten (they reference every
 * service), the per-service chains only of service ports that changed, and per-service chains
 * that `previous` had and the model does not are flushed and deleted.
 *
 * A port counts as changed if it is in `changed`, if its chain names differ from `previous`
 * (a caller's incomplete change set cannot leave a jump to a missing chain), or if large-cluster
 * mode flipped (upstream leaves stale comments then). Rule texts are not compared: a change of
 * render options needs a full sync. Only the ports whose chain lists are not the very same
 * objects as in `previous` (or that `changed` names) are looked at: the renderer reuses a
 * port's lists when it did not render it again.
 */
export function serializePartial(model: RenderedIptablesModel, opts: PartialOptions): RestoreInput {
  const { rewrite, gone } = changedPorts(model, opts);
  const plans: TablePlan[] = [];
  for (const table of TABLES) {
    const chains = model[table].chains;
    const write: string[] = [];
    const rules: (readonly string[])[] = [];
    chains.fixed.forEach((r, c) => {
      write.push(c);
      rules.push(r);
    });
    for (const spn of rewrite) {
      const own = chains.own(spn);
      if (own === undefined) continue;
      for (const c of own.ownChains) write.push(c);
      for (const r of own.ownRules) rules.push(r);
    }
    // A port's chains are named after the port (hashes of its name), so a chain it had is still
    // in the model exactly when the port still declares it.
    const remove: string[] = [];
    for (const [spn, before] of gone) {
      const now = model.serviceChains.get(spn)?.[table] ?? [];
      for (const c of before[table]) if (!now.includes(c) && !chains.fixed.has(c)) remove.push(c);
    }
    plans.push({ table, write, rules, remove, extra: [] });
  }
  return restoreInput(plans);
}

/**
 * The service ports a partial sync must rewrite (see serializePartial), in model order, and the
 * previous chain lists of the ports whose lists are not the very same now (their chains may be
 * gone), in name order.
 */
export function changedPorts(model: RenderedIptablesModel, opts: PartialOptions): { rewrite: ServicePortName[]; gone: [ServicePortName, ServiceChains][] } {
  // Large-cluster mode changes the comments in every endpoint rule: rewrite everything.
  const all = model.largeClusterMode !== opts.previous.largeClusterMode;
  const rewrite: ServicePortName[] = all ? [...model.serviceChains.names] : [];
  const gone: [ServicePortName, ServiceChains][] = [];
  forEachChangedPort(model.serviceChains, opts.previous.serviceChains, opts.changed, (spn, now, before) => {
    if (before !== undefined && before !== now) gone.push([spn, before]);
    if (all || now === undefined) return;
    // A list the renderer did not reuse, with the same names: the port's rules may differ, its chains do not.
    if (opts.changed.has(spn) || before === undefined || !sameNames(now.filter, before.filter) || !sameNames(now.nat, before.nat)) rewrite.push(spn);
  });
  return { rewrite, gone };
}

function sameNames(now: readonly string[], before: readonly string[]): boolean {
  if (now.length !== before.length) return false;
  for (let i = 0; i < now.length; i++) if (now[i] !== before[i]) return false;
  return true;
}
