/**
 * iptables mode: render the snapshot into upstream's nat and filter rules and apply them with
 * one atomic `iptables-restore --noflush --counters` per sync. Partial syncs rewrite only the
 * chains of service ports that changed; full syncs also (re)install the jumps from the
 * built-in chains and delete stale KUBE-* chains left by anyone (an earlier kproxy, a crash).
 * A failed restore leaves the kernel as it was (iptables-restore commits each table
 * atomically); the proxier retries with a full sync. On the nf_tables backend a sync that
 * writes many per-service chains first writes them in staging restores of whole service ports
 * (serializeStages), each consistent on its own.
 */
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../core/errors.js';
import type { ServicePortName } from '../../core/ids.js';
import type { Snapshot } from '../../core/snapshot.js';
import { copyOf } from '../../core/text.js';
import { UdpConntrackCleaner } from '../conntrack-cleanup.js';
import type { Logger } from '../../observability/log.js';
import type { ProxyMetrics } from '../../observability/metrics.js';
import { realClock, type Clock } from '../../platform/clock.js';
import type { Conntrack } from '../../platform/conntrack.js';
import { committedBefore, RestoreError, type Iptables } from '../../platform/iptables.js';
import type { Backend } from '../backend.js';
import type { IptablesModel, IptablesRenderOptions, RenderedIptablesModel, TableName } from './model.js';
import { isServiceChainName } from './names.js';
import { CANARY_CHAIN, CANARY_TABLES, IptablesRenderer, JUMP_RULES, TOP_LEVEL_CHAINS, jumpRulesFor, renderIptables, type JumpRule } from './render.js';
import { changedPorts, serializeFull, serializePartial, serializeStages, type RestoreInput } from './serialize.js';

export interface IptablesBackendOptions {
  readonly iptables: Iptables;
  readonly conntrack: Conntrack;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly render: IptablesRenderOptions;
  /** For the hourly full sync; the real clock unless a test gives one. */
  readonly clock?: Clock;
  /** nf_tables backend: chains per staging restore (default STAGE_CHAINS); see serializeStages. */
  readonly stageChains?: number;
}

/**
 * On the nf_tables backend, a restore that would declare more per-service chains than this is
 * split into staging restores of at most this many (whole service ports) ahead of the main one.
 * At 10,000 services: one restore did not finish in 19 minutes; stages of ~5,000 chains take
 * 1-4 s each, 30-38 s in all.
 */
export const STAGE_CHAINS = 5000;

/**
 * Upstream's FullSyncPeriod: with nothing changed, a periodic sync writes nothing (its checks
 * found every jump and canary in place), but at least this often it rewrites everything.
 */
export const FULL_SYNC_PERIOD_MS = 60 * 60 * 1000;

/** Per-service chain prefixes kproxy owns; stale ones are deleted on full syncs. */
const OWNED_PREFIXES = ['KUBE-SVC-', 'KUBE-SVL-', 'KUBE-EXT-', 'KUBE-FW-', 'KUBE-SEP-'];

export class IptablesBackend implements Backend {
  readonly mode = 'iptables' as const;
  /** The model the kernel holds (last successful restore); undefined before the first. */
  private applied: RenderedIptablesModel | undefined;
  private synced = false;
  private readonly conntrack: UdpConntrackCleaner;
  /** Re-renders only the service ports that changed since the previous sync's snapshot. */
  private readonly renderer: IptablesRenderer;
  private readonly clock: Clock;
  /** When the last full sync succeeded (clock ms). */
  private lastFullSync = 0;
  /** Chains staged by a sync whose main restore has not succeeded: nothing refers to them. */
  private readonly unreferenced = new Set<string>();

  constructor(private readonly opts: IptablesBackendOptions) {
    this.conntrack = new UdpConntrackCleaner(opts.conntrack, opts.log, opts.metrics);
    this.clock = opts.clock ?? realClock;
    this.renderer = new IptablesRenderer(opts.render);
  }

  /** The exact restore input a full sync of this snapshot writes (for --dry-run). */
  dryRun(snap: Snapshot): RestoreInput {
    return serializeFull(renderIptables(snap, this.opts.render));
  }

  async sync(snap: Snapshot): Promise<void> {
    const model = this.renderer.render(snap);
    const firstSync = !this.synced;
    let full = snap.full || this.applied === undefined || this.clock.now() - this.lastFullSync >= FULL_SYNC_PERIOD_MS;
    // A sync for a change checks only the mangle canary (upstream's flush monitor; mangle is small,
    // where every check in nat or filter makes the tool load the whole table); a periodic sync
    // with nothing changed also checks every jump from the built-in chains.
    const nothingChanged = !full && snap.changed.size === 0 && this.renderer.lastRendered === 0;
    if (!full && !(await this.intact(this.applied ?? model, !nothingChanged))) {
      this.opts.log.warn('kproxy rules were flushed or deleted by someone else; resyncing everything');
      full = true;
    }
    // Nothing to write: the legacy tool rewrites the whole table for any input (24 s at 10,000
    // services), which every sync period would otherwise spend re-stating what is there.
    if (nothingChanged && !full) return;
    const previous = this.applied ?? model;
    const kernel = full ? await this.inspect(model) : undefined;
    let input: RestoreInput | undefined;
    try {
      // Only chains nothing refers to yet are staged: new ports' (a partial sync), or on a full
      // sync those the kernel does not have or that an unfinished sync staged.
      if (kernel) {
        const staged = await this.stage(model, model.serviceChains.names, (c) => !kernel.present.has(c) || this.unreferenced.has(c));
        input = serializeFull(model, { stale: kernel.stale, extra: kernel.extra, ...(staged ? { staged } : {}) });
      } else {
        const changes = changedPorts(model, { changed: snap.changed, previous });
        const staged = await this.stage(model, changes.rewrite.filter((spn) => !previous.serviceChains.has(spn)), () => true);
        input = serializePartial(model, { changed: snap.changed, previous, changes, ...(staged ? { staged } : {}) });
      }
      if (!input.empty) await this.opts.iptables.restore(input, { counters: true });
      this.unreferenced.clear();
    } catch (err) {
      this.opts.metrics.iptablesRestoreFailures.inc();
      if (!full) this.opts.metrics.iptablesPartialRestoreFailures.inc();
      if (input !== undefined) await this.rollBack(err, input, model);
      this.applied = undefined; // force a full sync next
      throw err;
    }
    for (const [spn, reason] of model.skipped) {
      if (full || snap.changed.has(spn)) this.opts.log.error('service port skipped: not programmed', { servicePort: spn, reason });
    }
    this.opts.metrics.skippedServicePorts.set({ mode: this.mode }, model.skipped.size);
    this.applied = model;
    this.synced = true;
    if (full) this.lastFullSync = this.clock.now();
    for (const table of ['filter', 'nat'] as const) {
      this.opts.metrics.iptablesTotal.set({ table }, model[table].chains.rules);
      this.opts.metrics.iptablesLast.set({ table }, input.written[table]);
    }
    await this.conntrack.clean(snap, firstSync);
  }

  /**
   * On the nf_tables backend, when the candidates whose chains nothing refers to yet have more
   * than STAGE_CHAINS chains, writes those in staging restores (serializeStages), and returns
   * the ports it wrote; otherwise (and always on the legacy backend, which rewrites
   * the whole table for any input) nothing. A port the kernel's rules may reach is never staged:
   * its change waits for the main restore, so a failed sync changes nothing traffic sees. The
   * staged chains are remembered as unreferenced until a main restore succeeds.
   */
  private async stage(model: RenderedIptablesModel, candidates: readonly ServicePortName[], unreferenced: (chain: string) => boolean): Promise<ReadonlySet<ServicePortName> | undefined> {
    const max = this.opts.stageChains ?? STAGE_CHAINS;
    const ports = candidates.filter((spn) => model.nat.chains.own(spn)?.ownChains.every(unreferenced) ?? false);
    let chains = 0;
    for (const spn of ports) chains += model.nat.chains.own(spn)?.ownChains.length ?? 0;
    if (chains <= max || !(await this.opts.iptables.nfTables())) return undefined;
    const stages = serializeStages(model, ports, max);
    for (const spn of ports) for (const c of model.nat.chains.own(spn)?.ownChains ?? []) this.unreferenced.add(c);
    for (const [i, stage] of stages.entries()) {
      const t = performance.now();
      await this.opts.iptables.restore(stage);
      this.opts.log.info('staging restore done', { stage: i + 1, of: stages.length, ms: Math.round(performance.now() - t) }, 2);
    }
    return new Set(ports);
  }

  /**
   * iptables-restore commits table by table: when a later table fails, the earlier ones are
   * already in the kernel. Put those back to the last good model (and drop chains the failed
   * sync created), so the kernel never holds half a sync. Before the first good sync there is
   * nothing to go back to, and nothing jumps into our chains yet.
   */
  private async rollBack(err: unknown, input: RestoreInput, model: IptablesModel): Promise<void> {
    const prev = this.applied;
    if (!(err instanceof RestoreError) || err.line === undefined || !prev) return;
    const committed = committedBefore(input, err.line).filter((t): t is TableName => t === 'filter' || t === 'nat');
    if (committed.length === 0) return;
    const stale = new Map<TableName, string[]>(committed.map((t) => [t, [...model[t].chains.keys()].filter((c) => !prev[t].chains.has(c))]));
    const keep = serializeFull(prev, { stale, tables: committed });
    try {
      await this.opts.iptables.restore(keep, { counters: true });
      this.opts.log.warn('rolled back the tables a failed restore had already committed', { tables: committed.join(',') });
    } catch (rollbackErr) {
      this.opts.log.error('could not roll back after a failed restore; the next full sync rewrites everything', { err: errorMessage(rollbackErr) });
    }
  }

  /** The canary chains (and, unless canaryOnly, the jumps from built-in chains) are still there. */
  private async intact(model: IptablesModel, canaryOnly: boolean): Promise<boolean> {
    if (canaryOnly) return this.opts.iptables.chainExists(CANARY_TABLES[0], CANARY_CHAIN);
    for (const j of jumpRulesFor(model)) {
      if (!(await this.opts.iptables.hasRule(j.table, j.chain, j.args))) return false;
    }
    for (const table of CANARY_TABLES) {
      if (!(await this.opts.iptables.chainExists(table, CANARY_CHAIN))) return false;
    }
    return true;
  }

  /**
   * What a full sync's input needs from the kernel: the stale per-service chains to delete, and
   * the canary chains and the jumps from the built-in chains to add, as upstream's EnsureChain/EnsureRule
   * (prepend, in list order) would leave them, for whatever the filter/nat dumps show missing.
   * Upstream runs a command per chain and rule; in the legacy backend each one loads and rewrites
   * a whole table (tens of seconds at 10,000 services), so they ride in the one restore instead,
   * before each table's COMMIT (after the jump targets are declared). The mangle canary is
   * checked on its own (mangle is small and not dumped). Only what is needed is kept of each
   * dump, not the dump (tens of MB at 10,000 services) while the restore runs.
   */
  private async inspect(model: IptablesModel): Promise<{ stale: Map<TableName, string[]>; extra: Map<string, string[]>; present: Set<string> }> {
    // present: the model's per-service chains the kernel has (a port with one is never staged).
    const jumps = jumpRulesFor(model);
    const stale = new Map<TableName, string[]>();
    const present = new Set<string>();
    const extra = new Map<string, string[]>();
    for (const table of ['filter', 'nat'] as const) {
      const want = model[table].chains;
      const tableJumps = new Map(jumps.filter((j) => j.table === table).map((j) => [ruleText('-A', j), j]));
      const jumpsFound = new Set<JumpRule>();
      const staleHere: string[] = [];
      let canary = false;
      // Line by line: the nat dump is tens of MB at 10,000 services, of which this keeps a few names.
      await this.opts.iptables.saveLines(table, (l) => {
        const space = l.indexOf(' ');
        if (l.startsWith(':') && space > 0) {
          const c = l.slice(1, space);
          if (c === CANARY_CHAIN) canary = true;
          else if (OWNED_PREFIXES.some((p) => c.startsWith(p))) {
            if (!want.has(c)) staleHere.push(copyOf(c));
            else present.add(copyOf(c));
          }
        } else {
          const j = tableJumps.get(l);
          if (j !== undefined) jumpsFound.add(j);
        }
      });
      stale.set(table, staleHere);
      const lines = missingLines([...tableJumps.values()].filter((j) => !jumpsFound.has(j)), canary);
      if (lines.length > 0) extra.set(table, lines);
    }
    if (!(await this.opts.iptables.chainExists('mangle', CANARY_CHAIN))) extra.set('mangle', [`:${CANARY_CHAIN} - [0:0]`]);
    return { stale, extra, present };
  }

  /** iptables mode keeps its rules on exit (as upstream: traffic keeps flowing across restarts). */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Restore lines that add the canary (unless it is there) and the given jumps, before a table's COMMIT. */
function missingLines(jumps: readonly JumpRule[], canary: boolean): string[] {
  return [...(canary ? [] : [`:${CANARY_CHAIN} - [0:0]`]), ...jumps.map((j) => ruleText('-I', j))];
}

/**
 * What a full sync adds on a node that has none of kproxy's rules yet: every table's canary and
 * every jump from the built-in chains (the bench loads the same ruleset with the tool alone).
 */
export function freshNodeExtra(model: IptablesModel): Map<string, string[]> {
  const jumps = jumpRulesFor(model);
  const extra = new Map<string, string[]>([['mangle', [`:${CANARY_CHAIN} - [0:0]`]]]);
  for (const table of ['filter', 'nat'] as const) extra.set(table, missingLines(jumps.filter((j) => j.table === table), false));
  return extra;
}

/**
 * The jump as restore input: `-I CHAIN 1 args` (prepend), or `-A CHAIN args`, which is also how
 * iptables-save prints it; arguments with spaces in double quotes.
 */
function ruleText(op: '-A' | '-I', j: JumpRule): string {
  return [op, j.chain, ...(op === '-I' ? ['1'] : []), ...j.args.map((a) => (/\s/.test(a) ? `"${a}"` : a))].join(' ');
}

/**
 * `--cleanup` for iptables mode (upstream's CleanupLeftovers): the jumps from the built-in
 * chains, then every KUBE-* chain iptables mode owns, and the canaries. Nothing else.
 */
export async function removeIptablesRules(iptables: Iptables): Promise<string[]> {
  for (const j of JUMP_RULES) await iptables.deleteRule(j.table, j.chain, j.args);
  const removed: string[] = [];
  for (const table of ['filter', 'nat'] as const) {
    const owned = (await iptables.chains(table))
      .filter((c) => (TOP_LEVEL_CHAINS[table] as readonly string[]).includes(c) || isServiceChainName(c) || c === CANARY_CHAIN);
    removed.push(...(await iptables.deleteChains(table, owned)).map((c) => `${table}/${c}`));
  }
  removed.push(...(await iptables.deleteChains('mangle', [CANARY_CHAIN])).map((c) => `mangle/${c}`));
  return removed;
}
