/**
 * nftables mode: render the snapshot into upstream's `kube-proxy` table and apply each sync as
 * one `nft -f -` transaction (the kernel applies it all or nothing), after staging transactions
 * that load the chains of new service ports nothing refers to yet. Partial syncs rewrite only
 * changed chains and diff set/map elements; per-service chains that went stale are flushed at
 * once and deleted at a later sync, at least a second afterwards (before Linux 6.2 a chain a
 * just-deleted map element pointed at is still "in use" for a moment, as upstream notes), and
 * with the affinity sets that went stale at most once per cleanup period: a delete makes nft load
 * every chain and set first (see serialize.ts), which no endpoint change should wait for.
 */
import { KproxyError, errorMessage } from '../../core/errors.js';
import type { Snapshot } from '../../core/snapshot.js';
import { ChunkedText, copyOf, linesAround, type Text } from '../../core/text.js';
import type { Logger } from '../../observability/log.js';
import type { ProxyMetrics } from '../../observability/metrics.js';
import type { Clock } from '../../platform/clock.js';
import type { Conntrack } from '../../platform/conntrack.js';
import { execLines, type Exec } from '../../platform/exec.js';
import type { Backend } from '../backend.js';
import { UdpConntrackCleaner } from '../conntrack-cleanup.js';
import type { NftablesModel, NftablesRenderOptions, ServicePortObjects } from './model.js';
import { NAT_PREROUTING, TABLE, isAffinitySetName, isServiceChainName } from './names.js';
import { NftablesRenderer, renderNftables } from './render.js';
import { deleteStaleLines, serializeCleanup, serializeFull, serializePartial, serializeStages, stillStale, type NftTransaction, type StagedObjects } from './serialize.js';

export interface NftablesBackendOptions {
  readonly exec: Exec;
  readonly conntrack: Conntrack;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly render: NftablesRenderOptions;
  /** Size of a staging transaction, in lines (default STAGE_LINES); see serializeStages. */
  readonly stageLines?: number;
  /**
   * A partial sync deletes stale chains and sets at most once per this many ms (default 30 s;
   * kproxy passes its sync period, as upstream's iptables mode cleans up in large clusters).
   */
  readonly staleCleanupMs?: number;
}

/**
 * Lines per staging transaction. Each nft run pays a cache load that grows with the table (1.2 s
 * at 10,000 services), and each transaction the kernel's walk that grows with its square: see
 * docs/benchmarks.md for the sizes measured.
 */
export const STAGE_LINES = 20000;

/** The periodic flush check waits this many times its own last duration before it runs again. */
const CHECK_BACKOFF = 10;

/**
 * A line handler for an nft listing that passes on the names of the `kind` objects (chain, set,
 * map) inside one table.
 */
export function tableNames(family: string, table: string, kind: RegExp, onName: (name: string) => void): (line: string) => void {
  let inside = false;
  return (line) => {
    const t = /^table (\S+) (\S+) \{/.exec(line);
    if (t) {
      inside = t[1] === family && t[2] === table;
      return;
    }
    if (!inside) return;
    const m = /^\t(\S+) (\S+) \{/.exec(line);
    if (m?.[1] && m[2] && kind.test(m[1])) onName(m[2]);
  };
}

/** How long a flushed stale chain waits before it is deleted. */
const STALE_CHAIN_DELAY_MS = 1000;

/** Default of NftablesBackendOptions.staleCleanupMs. */
const STALE_CLEANUP_MS = 30_000;

export class NftablesBackend implements Backend {
  readonly mode = 'nftables' as const;
  private applied: NftablesModel | undefined;
  private synced = false;
  /** No periodic flush check before this time (see startCheck()). */
  private nextCheckAt = 0;
  /** The background flush check running now, and whether one found our table flushed. */
  private checking: Promise<void> | undefined;
  private flushSeen = false;
  /** Stale chains flushed earlier and stale affinity sets, with when; deleted once the delay has passed. */
  private readonly pendingStale = new Map<string, number>();
  /** When a partial sync last deleted stale chains and sets. */
  private lastCleanupAt = -Infinity;
  /** Chains staged by a sync whose main transaction has not committed: nothing refers to them. */
  private readonly unreferenced = new Set<string>();
  private readonly conntrack: UdpConntrackCleaner;
  private readonly family: 'ip' | 'ip6';
  /** Re-renders only the service ports that changed since the previous sync's snapshot. */
  private readonly renderer: NftablesRenderer;
  /** Rewritten by every partial sync: the renderer's fixed chains but the one the flush check reads. */
  private readonly rewritten: readonly string[];

  constructor(private readonly opts: NftablesBackendOptions) {
    this.conntrack = new UdpConntrackCleaner(opts.conntrack, opts.log, opts.metrics);
    this.renderer = new NftablesRenderer(opts.render);
    this.rewritten = this.renderer.fixedChains.filter((c) => c !== NAT_PREROUTING);
    this.family = opts.render.family === 'IPv6' ? 'ip6' : 'ip';
  }

  /** The exact transaction a full sync of this snapshot runs (for --dry-run). */
  dryRun(snap: Snapshot): NftTransaction {
    return serializeFull(renderNftables(snap, this.opts.render));
  }

  /** Runs one transaction; on failure the error shows the line nft names (the text is made again for that). */
  private async nft(text: Text): Promise<void> {
    const r = await this.opts.exec('nft', ['-f', '-'], { input: text });
    if (r.code === 0) return;
    if (r.code === 127) throw new KproxyError('KP_ERR_NFT_MISSING', 'nftables mode needs the nft tool (Debian package nftables), which is not installed');
    const m = /^\/dev\/stdin:(\d+):/m.exec(r.stderr);
    const at = m?.[1] ? Number(m[1]) : undefined;
    const context = at === undefined ? '' : `\n> ${at}: ${linesAround(text, at)[0]?.[1] ?? ''}`;
    throw new KproxyError('KP_ERR_NFT_APPLY', `nft -f failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(0, 6).join('\n')}${context}`);
  }

  /**
   * Our table's per-service chains and affinity sets, against the model: those that exist in the
   * kernel and that the model does not have (a full sync flushes or deletes them), and the
   * model's per-service chains that do not exist yet (nothing can refer to them: they may be
   * staged). Names only: `list chains` and terse `list sets`/`list maps` leave out rules and
   * elements, which `nft list table` would print (over a minute at 10,000 services); and read
   * line by line, keeping copies of the stale names only (the chain listing alone is MBs at
   * 10,000 services).
   */
  private async existing(model: NftablesModel): Promise<{ chains: string[]; sets: string[]; missing: Set<string> }> {
    const missing = new Set([...model.chains.keys()].filter(isServiceChainName));
    /** The stale names in one listing; undefined when nft fails (no table is not a failure). */
    const list = async (args: string[], kind: RegExp, stale: (name: string) => boolean): Promise<string[] | undefined> => {
      const out: string[] = [];
      const r = await execLines(this.opts.exec, 'nft', args, tableNames(this.family, TABLE, kind, (n) => {
        if (stale(n)) out.push(copyOf(n));
      }));
      return r.code === 0 ? out : undefined;
    };
    const staleSet = (s: string): boolean => isAffinitySetName(s) && !model.sets.has(s);
    const chains = await list(['list', 'chains', this.family], /^chain$/, (c) => {
      missing.delete(c);
      return isServiceChainName(c) && !model.chains.has(c);
    });
    const sets = await list(['-t', 'list', 'sets', this.family], /^set$/, staleSet);
    const maps = await list(['-t', 'list', 'maps', this.family], /^map$/, staleSet);
    return {
      chains: chains ?? [],
      sets: [...sets ?? [], ...maps ?? []],
      // Without the chain listing, no chain is known to be missing, and nothing is staged.
      missing: chains === undefined ? new Set() : missing,
    };
  }

  /**
   * Runs the staging transactions (serializeStages) for the service ports whose chains all pass
   * `unreferenced`; returns what they wrote. Until the main transaction commits, those chains are
   * remembered as unreferenced, so a later full sync may stage them again.
   */
  private async stage(model: NftablesModel, unreferenced: (chain: string) => boolean, candidates: Iterable<ServicePortObjects> = model.servicePorts.values()): Promise<StagedObjects | undefined> {
    const ports = [...candidates].filter((p) => p.chains.every(unreferenced));
    const { transactions, staged } = serializeStages(model, ports, this.opts.stageLines ?? STAGE_LINES);
    if (transactions.length === 0) return undefined;
    for (const c of staged.chains) this.unreferenced.add(c);
    for (const tx of transactions) await this.nft(tx);
    return staged;
  }

  async sync(snap: Snapshot): Promise<void> {
    const model = this.renderer.render(snap);
    const firstSync = !this.synced;
    let full = snap.full || this.applied === undefined;
    let tx: NftTransaction | undefined;
    let partialFailed = false;
    // An outside `nft flush table` empties every chain and keeps the maps, which no partial
    // transaction would notice: a sync with nothing changed (periodic) starts a check in the
    // background (any `nft list` loads the whole table: minutes at 10,000 services, which no
    // sync for a change should wait behind), and the sync after a failed check is a full one.
    if (!full && this.flushSeen) {
      this.opts.log.warn('the kube-proxy nftables table was deleted or flushed by someone else; resyncing everything');
      full = true;
    }
    if (full) this.flushSeen = false;
    else if (snap.changed.size === 0) this.startCheck();
    const now = this.opts.clock.now();
    // Chains and sets left by an earlier sync and not used again: delete them in this
    // transaction, if the last cleanup is a period ago.
    const cleanup = now - this.lastCleanupAt >= (this.opts.staleCleanupMs ?? STALE_CLEANUP_MS);
    const due = !cleanup ? [] : stillStale(model, [...this.pendingStale].filter(([, at]) => now - at >= STALE_CHAIN_DELAY_MS).map(([c]) => c));
    if (!full) {
      // The fixed chains (hooks, jumps, masquerading) are rewritten in every transaction, which
      // repairs an outside flush of them, except the one the flush check looks at; a deleted table or
      // map makes the transaction fail, and then a full sync follows at once.
      const previous = this.applied ?? model;
      try {
        // A chain the installed model does not have is new, or flushed as stale: unreferenced.
        // Only a port the snapshot marks changed can be new.
        const changed = [...snap.changed].flatMap((spn) => model.servicePorts.get(spn) ?? []);
        const staged = await this.stage(model, (c) => !previous.chains.has(c), changed);
        tx = serializePartial(model, { previous, changed: snap.changed, rewriteChains: this.rewritten, staged });
        const partial = tx;
        const family = this.family;
        await this.nft(due.length === 0 ? partial : new ChunkedText(function* () {
          yield* partial.lines();
          yield* deleteStaleLines(family, due);
        }));
      } catch (err) {
        this.opts.metrics.nftablesSyncFailures.inc();
        partialFailed = true;
        this.opts.log.warn('partial nftables sync failed (was the kube-proxy table changed by someone else?); resyncing everything', { err: errorMessage(err) });
        full = true;
      }
    }
    if (full || tx === undefined) {
      const ex = await this.existing(model);
      try {
        const staged = await this.stage(model, (c) => ex.missing.has(c) || this.unreferenced.has(c));
        tx = serializeFull(model, { existingChains: ex.chains, existingSets: ex.sets, staged });
        await this.nft(tx);
        // It flushed every stale chain it listed (tx.stale) and deleted every stale set; whatever
        // else was pending is gone already, and deleting it would fail every later cleanup.
        const listed = new Set(tx.stale);
        for (const n of [...this.pendingStale.keys()]) if (!listed.has(n)) this.pendingStale.delete(n);
      } catch (err) {
        if (!partialFailed) this.opts.metrics.nftablesSyncFailures.inc(); // one failed sync counts once
        this.applied = undefined;
        throw err;
      }
    } else if (due.length > 0) {
      for (const c of due) this.pendingStale.delete(c);
      this.lastCleanupAt = now;
    }
    this.unreferenced.clear();
    for (const c of [...this.pendingStale.keys()]) if (model.chains.has(c) || model.sets.has(c)) this.pendingStale.delete(c);
    for (const c of tx.stale) if (!this.pendingStale.has(c)) this.pendingStale.set(c, now);
    this.applied = model;
    this.synced = true;
    await this.conntrack.clean(snap, firstSync);
  }

  /**
   * In the background: is our table still there and not flushed (nat-prerouting still jumps
   * to services)? Listing one chain makes nft load every chain and set of the table (minutes
   * at 10,000 services), so a check starts only once CHECK_BACKOFF times the last one's
   * duration has passed (it takes at most a tenth of the time) and none is running.
   */
  private startCheck(): void {
    const start = this.opts.clock.now();
    if (this.checking || start < this.nextCheckAt) return;
    this.checking = (async () => {
      try {
        const r = await this.opts.exec('nft', ['-t', 'list', 'chain', this.family, TABLE, NAT_PREROUTING]);
        if (r.code !== 0 || !/jump services/.test(r.stdout)) this.flushSeen = true;
      } finally {
        const end = this.opts.clock.now();
        this.nextCheckAt = end + CHECK_BACKOFF * (end - start);
        this.checking = undefined;
      }
    })();
  }

  /** nftables mode keeps its table on exit (as upstream); `--cleanup` deletes it. */
  async close(): Promise<void> {
    await this.checking?.catch(() => undefined);
  }

  /** The background flush check, if one is running (for tests). */
  get pendingCheck(): Promise<void> | undefined {
    return this.checking;
  }
}

/** `--cleanup` for nftables mode: deletes the kube-proxy tables (both families). */
export async function removeNftablesRules(exec: Exec): Promise<string[]> {
  const removed: string[] = [];
  for (const family of ['ip', 'ip6'] as const) {
    const r = await exec('nft', ['list', 'table', family, TABLE]);
    if (r.code !== 0) continue;
    const d = await exec('nft', ['-f', '-'], { input: serializeCleanup(family) });
    if (d.code !== 0) throw new KproxyError('KP_ERR_NFT_CLEANUP', `cannot delete table ${family} ${TABLE}: ${d.stderr.trim()}`);
    removed.push(`${family} ${TABLE}`);
  }
  return removed;
}
