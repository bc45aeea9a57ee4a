/**
 * The model as `iptables-restore --noflush` input, the way upstream writes it: per table, every
 * chain it rewrites declared `:NAME - [0:0]` (which creates or flushes it), then the rules, then
 * `-X` for chains to delete, then COMMIT; filter before nat. Chains not declared are left alone
 * by --noflush, which is what makes partial syncs possible. Deterministic and pure.
 */
import type { ServicePortName } from '../../core/ids.js';
import type { IptablesModel, TableName } from './model.js';
import { isServiceChainName } from './names.js';

const TABLES: readonly TableName[] = ['filter', 'nat'];

export type StaleChains = ReadonlyMap<TableName, readonly string[]>;

interface TablePlan {
  /** Chains to declare and fill, in order. */
  readonly write: readonly string[];
  /** Chains to flush and delete. */
  readonly remove: readonly string[];
}

function renderTable(model: IptablesModel, table: TableName, plan: TablePlan, out: string[]): void {
  const chains = model[table].chains;
  out.push(`*${table}`);
  for (const c of plan.write) out.push(`:${c} - [0:0]`);
  for (const c of plan.remove) out.push(`:${c} - [0:0]`);
  for (const c of plan.write) for (const r of chains.get(c) ?? []) out.push(r);
  for (const c of plan.remove) out.push(`-X ${c}`);
  out.push('COMMIT');
}

/**
 * Every chain of the model, in model order. `stale` adds chains to delete (e.g. per-service
 * chains found in the kernel that the model no longer has); chains the model has are never deleted.
 */
export function serializeFull(model: IptablesModel, stale?: StaleChains): string {
  const out: string[] = [];
  for (const table of TABLES) {
    const chains = model[table].chains;
    const remove = [...new Set(stale?.get(table) ?? [])].filter((c) => !chains.has(c));
    renderTable(model, table, { write: [...chains.keys()], remove }, out);
  }
  return out.join('\n') + '\n';
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
export function serializePartial(model: IptablesModel, opts: PartialOptions): string {
  const rewrite = changedPorts(model, opts);
  const out: string[] = [];
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
    renderTable(model, table, { write, remove }, out);
  }
  return out.join('\n') + '\n';
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
