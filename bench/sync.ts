/**
 * bench:sync — kproxy's control-plane cost against the kernel tool's own cost, per kernel mode.
 *
 * For N services × 10 endpoints (bench/cluster-gen.ts), per mode (iptables, nftables):
 * - in process (median of BENCH_RUNS): render (fresh renderer), serialize (full), and a
 *   one-endpoint change: incremental render + partial serialize;
 * - the kernel tool alone (median of BENCH_KERNEL_RUNS, each in a fresh namespace): the same full
 *   text through `iptables-legacy-restore --noflush` / `nft -f -` (nftables: kproxy's staging
 *   transactions and its main one, in order), then the partial text on top; nftables also as one
 *   transaction up to BENCH_NFT_ONE_TX_MAX services (the kernel makes that one quadratic);
 * - kproxy end to end (median of BENCH_KERNEL_RUNS): the real kproxy process in a fresh namespace
 *   with --manifests (a folder of JSON List files) from spawn to its "synced proxy rules" line,
 *   with kproxy's own measure of the sync; then one EndpointSlice edit in a manifest file to the
 *   partial sync's line; and the process's peak RSS (VmHWM); then BENCH_MORE_PARTIALS (20) more
 *   one-endpoint changes, one sync each, for at most BENCH_MORE_PARTIALS_S (120) seconds: their
 *   median, and the peak RSS after them.
 * Ratios are against the kernel tool measured in the same run. iptables mode runs with a legacy
 * node (kubelet's KUBE-IPTABLES-HINT chain in the namespace), so kproxy picks iptables-legacy as
 * upstream's image would; iptables-nft-restore is also timed alone up to BENCH_NFT_BACKEND_MAX
 * with the same one-restore text. Mode iptables-nft (BENCH_MODES=iptables-nft) is iptables mode
 * on an nf_tables node (the hint chain in iptables-nft): kproxy stages its full sync there, and
 * "tool alone" is iptables-nft-restore of those staging restores and the main one, in order.
 * IPVS: render and serialize only (BENCH_IPVS=0 leaves it out).
 *
 * Env: BENCH_SIZES (default 1000,10000; 30000 is supported), BENCH_MODES (iptables,nftables),
 * BENCH_RUNS (5), BENCH_KERNEL_RUNS (3; 1 at ≥30,000), BENCH_TOOL_TIMEOUT_S (900 per tool run),
 * BENCH_DEADLINE_MIN (90: later steps print n/a), BENCH_NFT_BACKEND_MAX (1000), BENCH_NFT_ONE_TX_MAX (1000),
 * BENCH_NAMESPACES (1; 0 = in-process columns only), BENCH_TOOL_ALONE (1; 0 = kproxy end to end only),
 * BENCH_MORE_PARTIALS (20), BENCH_MORE_PARTIALS_S (120). Needs root for the namespace columns (n/a otherwise).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { IptablesRenderer } from '../src/backends/iptables/render.js';
import { renderIpvs } from '../src/backends/ipvs/render.js';
import { serializeDryRun } from '../src/backends/ipvs/serialize.js';
import { serializeFull as iptFull, serializePartial as iptPartial, serializeStages as iptStages } from '../src/backends/iptables/serialize.js';
import { freshNodeExtra, STAGE_CHAINS } from '../src/backends/iptables/backend.js';
import type { RenderedIptablesModel as IptablesModel } from '../src/backends/iptables/model.js';
import { NftablesRenderer } from '../src/backends/nftables/render.js';
import { serializeFull as nftFull, serializePartial as nftPartial, serializeStages } from '../src/backends/nftables/serialize.js';
import { STAGE_LINES } from '../src/backends/nftables/backend.js';
import type { NftablesModel } from '../src/backends/nftables/model.js';
import type { EndpointSliceObject } from '../src/core/objects.js';
import { SnapshotBuilder, type Snapshot } from '../src/core/snapshot.js';
import type { ChunkedText } from '../src/core/text.js';
import { cleanupStaleNetns, isRoot, type Netns } from '../src/platform/netns.js';
import { BENCH_RENDER_OPTS as RENDER_OPTS, generateCluster, sliceWithEndpoints, toSourceEvents, writeManifests, writeSliceFile, type Cluster } from './cluster-gen.js';
import { freshNetns, median, ms, startKproxy } from './kproxy-proc.js';

/** iptables-nft: iptables mode on a node whose iptables is the nf_tables backend (kubelet's hint chain there). */
type Mode = 'iptables' | 'nftables' | 'iptables-nft';
const isIptables = (mode: Mode): boolean => mode !== 'nftables';

const NODE = RENDER_OPTS.nodeName;

const env = (k: string, d: string): string => process.env[k] ?? d;
const SIZES = env('BENCH_SIZES', '1000,10000').split(',').map(Number);
const MODES = env('BENCH_MODES', 'iptables,nftables').split(',') as Mode[];
const RUNS = Number(env('BENCH_RUNS', '5'));
const TOOL_TIMEOUT_MS = Number(env('BENCH_TOOL_TIMEOUT_S', '900')) * 1000;
const DEADLINE = performance.now() + Number(env('BENCH_DEADLINE_MIN', '90')) * 60_000;
const NFT_BACKEND_MAX = Number(env('BENCH_NFT_BACKEND_MAX', '1000'));
const NFT_ONE_TX_MAX = Number(env('BENCH_NFT_ONE_TX_MAX', '1000'));
const TOOL_ALONE = env('BENCH_TOOL_ALONE', '1') !== '0';
const MORE_PARTIALS = Number(env('BENCH_MORE_PARTIALS', '20'));
const MORE_PARTIALS_MS = Number(env('BENCH_MORE_PARTIALS_S', '120')) * 1000;
const kernelRuns = (n: number): number => Number(process.env.BENCH_KERNEL_RUNS ?? (n >= 30000 ? '1' : '3'));

function log(msg: string): void {
  process.stderr.write(`[bench:sync ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

interface Texts {
  /**
   * The full sync of the first snapshot, as the transactions kproxy runs in order (nftables: its
   * staging transactions, then the main one), and a partial text for one endpoint change after it
   * (made again when written).
   */
  readonly full: readonly ChunkedText[];
  /** nftables: the same full sync as one transaction (how it was done before staging). */
  readonly oneTransaction?: ChunkedText;
  readonly partial: ChunkedText;
  /** Their sizes in characters. */
  readonly fullChars: number;
  readonly partialChars: number;
}

/** Makes the whole texts, chunk by chunk as a sync writes them; returns their size. */
function produce(...texts: readonly ChunkedText[]): number {
  let n = 0;
  for (const text of texts) for (const chunk of text) n += chunk.length;
  return n;
}

interface InProcess {
  readonly render: number;
  readonly serialize: number;
  readonly partial: number;
  readonly partialRendered: number;
  readonly texts: Texts;
}

/** Render/serialize medians, and the one-endpoint partial (incremental render + partial serialize). */
function inProcess(mode: Mode, cluster: Cluster): InProcess {
  const events = toSourceEvents([...cluster.services, ...cluster.slices]);
  const b = new SnapshotBuilder(NODE);
  for (const e of events) b.handle(e);
  const snap = b.next();
  const renders: number[] = [];
  const sers: number[] = [];
  let full: readonly ChunkedText[] | undefined;
  let oneTransaction: ChunkedText | undefined;
  let fullChars = 0;
  const make = (): { render(s: Snapshot): IptablesModel | NftablesModel; lastRendered: number } =>
    isIptables(mode) ? new IptablesRenderer(RENDER_OPTS) : new NftablesRenderer(RENDER_OPTS);
  // nftables: the staging transactions and the main one, as NftablesBackend's full sync on a fresh node.
  const serialize = (m: IptablesModel | NftablesModel): readonly ChunkedText[] => {
    // IptablesBackend's full sync on a fresh node, with the canaries and the jumps from the
    // built-in chains (on nf_tables the kernel's commit walks what those reach); on nf_tables its
    // staging restores first.
    if (mode === 'iptables') return [iptFull(m as IptablesModel, { extra: freshNodeExtra(m as IptablesModel) })];
    if (mode === 'iptables-nft') {
      const im = m as IptablesModel;
      const ports = im.serviceChains.names;
      return [...iptStages(im, ports, STAGE_CHAINS), iptFull(im, { staged: new Set(ports), extra: freshNodeExtra(im) })];
    }
    const nm = m as NftablesModel;
    const { transactions, staged } = serializeStages(nm, nm.servicePorts.values(), STAGE_LINES);
    return [...transactions, nftFull(nm, { staged })];
  };
  const partialText = (m: IptablesModel | NftablesModel, prev: IptablesModel | NftablesModel, s: Snapshot): ChunkedText => (isIptables(mode)
    ? iptPartial(m as IptablesModel, { changed: s.changed, previous: prev as IptablesModel })
    : nftPartial(m as NftablesModel, { changed: s.changed, previous: prev as NftablesModel }));
  for (let r = 0; r < RUNS; r++) {
    const renderer = make();
    let t = performance.now();
    const m = renderer.render(snap);
    renders.push(performance.now() - t);
    t = performance.now();
    full = serialize(m);
    fullChars = produce(...full);
    sers.push(performance.now() - t);
    if (mode === 'nftables') oneTransaction = nftFull(m as NftablesModel);
  }
  // One endpoint removed from one service per run (a different service each time).
  const renderer = make();
  let prev = renderer.render(snap);
  const partials: number[] = [];
  let partial: ChunkedText | undefined;
  let partialChars = 0;
  let rendered = 0;
  const slices = events.flatMap((e) => (e.kind === 'EndpointSlice' && e.type === 'add' ? [e.object] : []));
  for (let r = 0; r < RUNS; r++) {
    const old: EndpointSliceObject | undefined = slices[r * 7];
    if (!old) break;
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: old, object: { ...old, endpoints: old.endpoints.slice(1) } });
    const t = performance.now();
    const s = b.next();
    const m = renderer.render(s);
    const text = partialText(m, prev, s);
    const chars = produce(text);
    partials.push(performance.now() - t);
    if (r === 0) {
      partial = text;
      partialChars = chars;
    }
    rendered = renderer.lastRendered;
    prev = m;
  }
  if (full === undefined || partial === undefined) throw new Error('bench: no runs');
  return { render: median(renders), serialize: median(sers), partial: median(partials), partialRendered: rendered, texts: { full, ...(oneTransaction ? { oneTransaction } : {}), partial, fullChars, partialChars } };
}

interface ToolTimes {
  readonly full: number;
  readonly partial: number;
}

async function withNetns<T>(fn: (ns: Netns) => Promise<T>): Promise<T> {
  const ns = await freshNetns('bench-sync', log);
  try {
    return await fn(ns);
  } finally {
    await ns.destroy();
  }
}

/** The kernel tool alone: the full sync's texts in order into a fresh namespace, then the partial text on top. */
async function toolAlone(tool: string, args: readonly string[], texts: Pick<Texts, 'full' | 'partial'>, runs: number): Promise<ToolTimes> {
  const full: number[] = [];
  const partial: number[] = [];
  for (let r = 0; r < runs && performance.now() < DEADLINE; r++) {
    await withNetns(async (ns) => {
      let t = performance.now();
      for (const [i, text] of texts.full.entries()) {
        const a = await ns.exec(tool, args, { input: text, timeoutMs: TOOL_TIMEOUT_MS });
        if (a.code !== 0) {
          log(`${tool} full (${i + 1} of ${texts.full.length}): exit ${a.code}${a.code === 124 ? ` (timed out after ${TOOL_TIMEOUT_MS / 1000} s)` : ''} ${a.stderr.slice(0, 300)}`);
          return;
        }
      }
      full.push(performance.now() - t);
      t = performance.now();
      const b = await ns.exec(tool, args, { input: texts.partial, timeoutMs: TOOL_TIMEOUT_MS });
      if (b.code === 0) partial.push(performance.now() - t);
      else log(`${tool} partial: exit ${b.code} ${b.stderr.slice(0, 300)}`);
    });
  }
  return { full: median(full), partial: median(partial) };
}

interface EndToEnd {
  /** spawn → "synced proxy rules" (full). */
  readonly startToSynced: number;
  /** kproxy's own measure of that full sync. */
  readonly fullSync: number;
  /** manifest file written → partial sync line. */
  readonly editToSynced: number;
  /** kproxy's own measure of the partial sync. */
  readonly partialSync: number;
  readonly rssMB: number;
  /** Median of the BENCH_MORE_PARTIALS one-endpoint changes after that one, each its own sync. */
  readonly morePartials: number;
  /** How many of them ran (BENCH_MORE_PARTIALS_S bounds their time). */
  readonly moreCount: number;
  /** Peak RSS after them: what a run of partial syncs adds to the first one's. */
  readonly rssAfterMoreMB: number;
}

/** The real kproxy process with --manifests, in a fresh namespace. */
async function endToEnd(mode: Mode, cluster: Cluster, dir: string, runs: number): Promise<EndToEnd> {
  const rows: EndToEnd[] = [];
  for (let r = 0; r < runs && performance.now() < DEADLINE; r++) {
    writeManifests(cluster, dir);
    await withNetns(async (ns) => {
      // A legacy node, as kubelet marks it: kproxy follows it (src/platform/iptables.ts).
      if (mode === 'iptables') await ns.execOk('iptables-legacy', ['-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
      if (mode === 'iptables-nft') await ns.execOk('iptables-nft', ['-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
      const kp = startKproxy(ns, [
        '--proxy-mode', isIptables(mode) ? 'iptables' : mode, '--manifests', dir, '--hostname-override', NODE, '-v', '2', '--cluster-cidr', '198.18.0.0/16', '--conntrack-max-per-core', '0',
        '--iptables-min-sync-period', '0', '--healthz-bind-address', '', '--metrics-bind-address', '',
      ]);
      try {
        const first = await kp.waitSync(1, TOOL_TIMEOUT_MS);
        const slices = [...cluster.slices];
        const i = 3 + r;
        const s = slices[i];
        if (!s) throw new Error('no slice');
        slices[i] = sliceWithEndpoints(s, 9, i * 10, NODE);
        const t = performance.now();
        writeSliceFile(slices, dir, i);
        // The sync for the edit: at 30,000 services the sync period ends during the first sync,
        // and the periodic sync that follows it (nothing changed) may come first.
        const second = await kp.waitChangeSync(1, TOOL_TIMEOUT_MS);
        const rssMB = kp.peakRssMB();
        // More one-endpoint changes, one sync each, to other slices: does memory creep?
        const more: number[] = [];
        const until = Math.min(DEADLINE, performance.now() + MORE_PARTIALS_MS);
        for (let k = 1; k <= MORE_PARTIALS && performance.now() < until; k++) {
          const j = (i + 7 * k) % slices.length;
          const sj = slices[j];
          if (!sj) break;
          slices[j] = sliceWithEndpoints(sj, 9, j * 10, NODE);
          const after = kp.syncs.length;
          writeSliceFile(slices, dir, j);
          more.push((await kp.waitChangeSync(after, TOOL_TIMEOUT_MS)).elapsedMs);
        }
        rows.push({
          startToSynced: first.at - kp.started, fullSync: first.elapsedMs,
          editToSynced: second.at - t, partialSync: second.elapsedMs, rssMB,
          morePartials: median(more), moreCount: more.length, rssAfterMoreMB: more.length === 0 ? NaN : kp.peakRssMB(),
        });
      } catch (err) {
        log(`kproxy ${mode}: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        await kp.stop();
      }
    });
  }
  const m = (k: keyof EndToEnd): number => median(rows.map((x) => x[k]));
  const peak = (k: 'rssMB' | 'rssAfterMoreMB'): number => (rows.length === 0 ? NaN : Math.max(...rows.map((x) => x[k])));
  return {
    startToSynced: m('startToSynced'), fullSync: m('fullSync'), editToSynced: m('editToSynced'), partialSync: m('partialSync'),
    rssMB: peak('rssMB'), morePartials: m('morePartials'), moreCount: m('moreCount'), rssAfterMoreMB: peak('rssAfterMoreMB'),
  };
}

/**
 * IPVS: render and serialize only (its kernel runs in an emulated VM, where timings mean
 * nothing). Serialize = the three texts a full sync would apply (ipvsadm, ipset, iptables).
 */
function ipvsRow(cluster: Cluster, n: number): string {
  const b = new SnapshotBuilder(NODE);
  for (const e of toSourceEvents([...cluster.services, ...cluster.slices])) b.handle(e);
  const snap = b.next();
  const renders: number[] = [];
  const sers: number[] = [];
  let bytes = 0;
  let servers = 0;
  for (let r = 0; r < RUNS; r++) {
    let t = performance.now();
    const m = renderIpvs(snap, { ...RENDER_OPTS, scheduler: 'rr' });
    renders.push(performance.now() - t);
    t = performance.now();
    bytes = serializeDryRun(m).length;
    sers.push(performance.now() - t);
    servers = m.virtualServers.length;
  }
  return `IPVS render only at ${n.toLocaleString('en')} services: render ${ms(median(renders))}, serialize ${ms(median(sers))} (${servers.toLocaleString('en')} virtual servers, ${(bytes / 1e6).toFixed(1)} MB of ipvsadm + ipset + iptables text; median of ${RUNS})`;
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : 'n/a');
const pad = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;

async function main(): Promise<void> {
  const root = isRoot() && env('BENCH_NAMESPACES', '1') !== '0';
  if (root) await cleanupStaleNetns('bench-sync');
  const full: string[] = [];
  const part: string[] = [];
  const extra: string[] = [];
  for (const n of SIZES) {
    const cluster = generateCluster({ services: n, endpointsPerService: 10, nodeName: NODE });
    const dir = mkdtempSync(join(tmpdir(), 'kproxy-bench-sync-'));
    try {
      for (const mode of MODES) {
        log(`${n} services, ${mode}: in process`);
        const ip = inProcess(mode, cluster);
        const own = ip.render + ip.serialize;
        const runs = kernelRuns(n);
        let tool: ToolTimes = { full: NaN, partial: NaN };
        let e2e: EndToEnd = { startToSynced: NaN, fullSync: NaN, editToSynced: NaN, partialSync: NaN, rssMB: NaN, morePartials: NaN, moreCount: NaN, rssAfterMoreMB: NaN };
        if (root && performance.now() < DEADLINE) {
          if (TOOL_ALONE) {
            log(`${n} services, ${mode}: kernel tool alone ×${runs}`);
            tool = isIptables(mode)
              ? await toolAlone(mode === 'iptables' ? 'iptables-legacy-restore' : 'iptables-nft-restore', ['--noflush'], ip.texts, runs)
              : await toolAlone('nft', ['-f', '-'], ip.texts, runs);
            if (mode === 'nftables' && ip.texts.oneTransaction && n <= NFT_ONE_TX_MAX) {
              const one = await toolAlone('nft', ['-f', '-'], { full: [ip.texts.oneTransaction], partial: ip.texts.partial }, runs);
              extra.push(`nft -f of the full sync as one transaction at ${n.toLocaleString('en')}: ${ms(one.full)} (staged, as kproxy runs it: ${ms(tool.full)} in ${ip.texts.full.length} transactions)`);
            }
          }
          if (TOOL_ALONE && mode === 'iptables' && n <= NFT_BACKEND_MAX) {
            const nftBackend = await toolAlone('iptables-nft-restore', ['--noflush'], ip.texts, runs);
            extra.push(`iptables-nft-restore (nf_tables backend) alone at ${n.toLocaleString('en')}: full ${ms(nftBackend.full)}, partial ${ms(nftBackend.partial)} (legacy: ${ms(tool.full)}, ${ms(tool.partial)})`);
          }
          log(`${n} services, ${mode}: kproxy end to end ×${runs}`);
          e2e = await endToEnd(mode, cluster, dir, runs);
        }
        full.push(pad([
          mode, n.toLocaleString('en'), ms(ip.render), ms(ip.serialize), `${(ip.texts.fullChars / 1e6).toFixed(1)} MB`, ms(tool.full),
          pct(own / (own + tool.full)), ms(e2e.fullSync), pct((e2e.fullSync - tool.full) / e2e.fullSync), ms(e2e.startToSynced),
          Number.isFinite(e2e.rssMB) ? `${e2e.rssMB.toFixed(0)} MB` : 'n/a',
        ]));
        part.push(pad([
          mode, n.toLocaleString('en'), `${ms(ip.partial)} (${ip.partialRendered} port)`, `${(ip.texts.partialChars / 1e3).toFixed(0)} kB`, ms(tool.partial),
          ms(e2e.partialSync), ms(e2e.editToSynced), pct(e2e.partialSync / e2e.fullSync),
          Number.isFinite(e2e.moreCount) && e2e.moreCount > 0 ? `${ms(e2e.morePartials)} (${e2e.moreCount})` : 'n/a', Number.isFinite(e2e.rssAfterMoreMB) ? `${e2e.rssAfterMoreMB.toFixed(0)} MB` : 'n/a',
        ]));
        process.stdout.write(`${full[full.length - 1] ?? ''}\n${part[part.length - 1] ?? ''}\n`);
      }
      if (env('BENCH_IPVS', '1') !== '0') extra.push(ipvsRow(cluster, n));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const kr = SIZES.map((n) => `${kernelRuns(n)} at ${n.toLocaleString('en')}`).join(', ');
  process.stdout.write([
    '',
    `Full sync: services × 10 endpoints. In-process columns: median of ${RUNS}; namespace columns: median of ${kr}.`,
    'kproxy share = (render + serialize) / (render + serialize + tool alone). e2e overhead = (kproxy full sync − tool alone) / kproxy full sync.',
    pad(['mode', 'services', 'render', 'serialize', 'text', 'tool alone', 'kproxy share', 'kproxy full sync', 'e2e overhead', 'start → synced', 'peak RSS']),
    pad(Array(11).fill('---')),
    ...full,
    '',
    'One-endpoint change (one EndpointSlice loses/changes one endpoint).',
    pad(['mode', 'services', 'render + serialize (incremental)', 'text', 'tool alone', 'kproxy partial sync', 'manifest edit → synced', 'partial / full', `more partial syncs: median (count)`, 'peak RSS after them']),
    pad(Array(10).fill('---')),
    ...part,
    '',
    ...extra,
    '',
  ].join('\n'));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:sync failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
