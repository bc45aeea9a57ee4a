/**
 * The model as `iptables-restore --noflush` input, the way upstream writes it: per table, every
 * chain it rewrites declared `:NAME - [0:0]` (which creates or flushes it), then the rules, then
 * `-X` for chains to delete, then COMMIT; filter before nat. Chains not declared are left alone
 * by --noflush, which is what makes partial syncs possible. Deterministic and pure.
 */
import type { ServicePortName } from '../../core/ids.js';
import { ChunkedText } from '../../core/text.js';
import type { IptablesModel, RenderedIptablesModel, ServiceChains, TableName } from './model.js';
import { forEachChangedPort, sameList } from '../port-cache.js';
import { KUBE_MARK_MASQ } from './names.js';
import { type PieceRules, TableChains } from './table-chains.js';

const TABLES: readonly TableName[] = ['filter', 'nat'];

export type StaleChains = ReadonlyMap<TableName, readonly string[]>;

/**
 * A restore input, made chunk by chunk as it is written (see ChunkedText), with the count of
 * `-A` rules it writes per table (sync_proxy_rules_iptables_last).
 */
export class RestoreInput extends ChunkedText {
  constructor(
    produce: () => Iterable<string>,
    readonly written: Readonly<Record<TableName, number>>,
    /** No table at all: a partial sync whose changes left every chain as it was. */
    readonly empty = false,
  ) {
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
  }, written, plans.length === 0);
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
  /** Service ports whose chains staging restores wrote (serializeStages): left out here. */
  readonly staged?: ReadonlySet<ServicePortName>;
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
    if (options.staged !== undefined && chains instanceof TableChains) {
      const staged = options.staged;
      writeChains(chains, write, rules, chains.ports.names.filter((spn) => !staged.has(spn)));
    } else {
      chains.forEach((r, c) => {
        write.push(c);
        rules.push(r);
      });
    }
    plans.push({ table, write, rules, remove, extra: options.extra?.get(table) ?? [] });
  }
  return restoreInput(plans);
}

export interface PartialOptions {
  /** Service ports whose Service or endpoints changed since `previous` was applied. */
  readonly changed: ReadonlySet<ServicePortName>;
  /** The model the kernel holds now (the last one restored successfully). */
  readonly previous: RenderedIptablesModel;
  /** Service ports whose chains staging restores wrote (serializeStages): left out here. */
  readonly staged?: ReadonlySet<ServicePortName>;
  /** changedPorts of this model with these options, when the caller has it already. */
  readonly changes?: PortChanges;
}

/** What changedPorts finds. */
export interface PortChanges {
  /** The ports to rewrite, in model order. */
  readonly rewrite: readonly ServicePortName[];
  /** The previous chain lists of ports whose lists are not the very same now, in name order. */
  readonly gone: readonly (readonly [ServicePortName, ServiceChains])[];
}

/**
 * A partial sync: the per-service chains only of service ports that changed, the top-level
 * chains (KUBE-SERVICES and the others that reference every service) only when their rules
 * differ from `previous`'s, and per-service chains that `previous` had and the model does not
 * are flushed and deleted. Upstream rewrites every top-level chain at every sync; an endpoint
 * change leaves them as they are, and on the nf_tables backend rewriting them is most of a
 * partial sync at 10,000 services (1.8 s, against ~0.3 s for the changed port's chains alone).
 * A table with nothing to write is left out. A chain that is deleted is always reached from a top-level
 * chain's rule that goes with it, or from its own port's chains, which are rewritten.
 *
 * A port is rewritten when its own chains or their rules differ from `previous`'s, and every
 * port when large-cluster mode flipped (upstream leaves stale comments then). Only the ports
 * whose chain lists are not the very same objects as in `previous` (or that `changed` names)
 * are compared: the renderer reuses a port's pieces when it did not render it again, so a
 * caller's incomplete change set cannot leave stale rules or a jump to a missing chain, and a
 * port rendered again to the same rules (an endpoint moved to another node, say) costs nothing.
 */
export function serializePartial(model: RenderedIptablesModel, opts: PartialOptions): RestoreInput {
  const { rewrite, gone } = opts.changes ?? changedPorts(model, opts);
  const staged = opts.staged;
  const ports = staged === undefined ? rewrite : rewrite.filter((spn) => !staged.has(spn));
  const plans: TablePlan[] = [];
  for (const table of TABLES) {
    const chains = model[table].chains;
    const write: string[] = [];
    const rules: (readonly string[])[] = [];
    // The fixed chains only where their rules changed (see the function's comment).
    const fixedBefore = opts.previous[table].chains.fixed;
    writeChains(chains, write, rules, ports, (c, r) => !sameList(r, fixedBefore.get(c)));
    // A port's chains are named after the port (hashes of its name), so a chain it had is still
    // in the model exactly when the port still declares it.
    const remove: string[] = [];
    for (const [spn, before] of gone) {
      const now = model.serviceChains.get(spn)?.[table] ?? [];
      for (const c of before[table]) if (!now.includes(c) && !chains.fixed.has(c)) remove.push(c);
    }
    // A table with nothing to write is left out: the legacy tool would rewrite it all the same.
    if (write.length > 0 || remove.length > 0) plans.push({ table, write, rules, remove, extra: [] });
  }
  return restoreInput(plans);
}

/** The fixed chains (those `fixed` says), then the own chains of `ports` (in model order), with their rules. */
function writeChains(chains: TableChains, write: string[], rules: (readonly string[])[], ports: readonly ServicePortName[], fixed: (chain: string, rules: readonly string[]) => boolean = () => true): void {
  chains.fixed.forEach((r, c) => {
    if (!fixed(c, r)) return;
    write.push(c);
    rules.push(r);
  });
  for (const spn of ports) {
    const own = chains.own(spn);
    if (own === undefined) continue;
    for (const c of own.ownChains) write.push(c);
    for (const r of own.ownRules) rules.push(r);
  }
}

/**
 * Restores to run before the main one on the nf_tables backend, where `iptables-nft-restore`'s
 * own work grows with the square of the chains one input declares (1,000 services' 11,000
 * chains: 6 s; 3,000: 96 s; 10,000 did not finish in 19 minutes), while the same chains in
 * inputs of a few thousand take ~1-2 s each. Each stage writes the nat chains of whole service
 * ports, at most `maxChains` chains (a port with more gets a stage of its own), in model order.
 * A port's chains jump only to each other and to KUBE-MARK-MASQ, which the first stage declares
 * with its rules (the same the main restore writes), so each stage is complete on its own and
 * the kernel applies it atomically. The backend stages only ports nothing refers to yet: their
 * chains wait unreferenced until the main restore's KUBE-SERVICES jumps to them, so a failure
 * between stages changes nothing traffic sees. The main restore then leaves the staged ports
 * out (`staged`).
 */
export function serializeStages(model: RenderedIptablesModel, ports: readonly ServicePortName[], maxChains: number): RestoreInput[] {
  const nat = model.nat.chains;
  const stages: RestoreInput[] = [];
  let batch: PieceRules[] = [];
  let size = 0;
  const flush = (): void => {
    if (batch.length === 0) return;
    const write: string[] = [];
    const rules: (readonly string[])[] = [];
    if (stages.length === 0) {
      write.push(KUBE_MARK_MASQ);
      rules.push(nat.fixed.get(KUBE_MARK_MASQ) ?? []);
    }
    for (const p of batch) {
      for (const c of p.ownChains) write.push(c);
      for (const r of p.ownRules) rules.push(r);
    }
    stages.push(restoreInput([{ table: 'nat', write, rules, remove: [], extra: [] }]));
    batch = [];
    size = 0;
  };
  for (const spn of ports) {
    const p = nat.own(spn);
    if (p === undefined || p.ownChains.length === 0) continue;
    if (size > 0 && size + p.ownChains.length > maxChains) flush();
    batch.push(p);
    size += p.ownChains.length;
  }
  flush();
  return stages;
}

/**
 * The service ports a partial sync must rewrite (see serializePartial), in model order, and the
 * previous chain lists of the ports whose lists are not the very same now (their chains may be
 * gone), in name order.
 */
export function changedPorts(model: RenderedIptablesModel, opts: PartialOptions): PortChanges {
  // Large-cluster mode changes the comments in every endpoint rule: rewrite everything.
  const all = model.largeClusterMode !== opts.previous.largeClusterMode;
  const rewrite: ServicePortName[] = all ? [...model.serviceChains.names] : [];
  const gone: [ServicePortName, ServiceChains][] = [];
  forEachChangedPort(model.serviceChains, opts.previous.serviceChains, opts.changed, (spn, now, before) => {
    if (before !== undefined && before !== now) gone.push([spn, before]);
    if (all || now === undefined) return;
    // A port rendered again (or named as changed) whose chains and rules are what the kernel
    // already holds needs nothing written.
    if (before === undefined || !TABLES.every((t) => sameOwn(model[t].chains.own(spn), opts.previous[t].chains.own(spn)))) rewrite.push(spn);
  });
  return { rewrite, gone };
}

/** The same own chains with the same rules. */
function sameOwn(now: PieceRules | undefined, before: PieceRules | undefined): boolean {
  if (now === before) return true;
  if (now === undefined || before === undefined || !sameList(now.ownChains, before.ownChains)) return false;
  return now.ownRules.every((r, i) => sameList(r, before.ownRules[i]));
}
