/**
 * bench:nft-floor — what one `nft -f` costs against a table of N services, whatever kproxy does:
 * the floor under nftables mode's change-to-rules latency.
 *
 * In a fresh namespace, the full ruleset of N services × 10 endpoints (bench/cluster-gen.ts,
 * kproxy's own renderer and serializer) is loaded once; then each probe transaction is run
 * BENCH_FLOOR_RUNS (5) times through `nft -f -`, median printed, against `add table` (an nft
 * process that touches nothing: the process's own cost) as the baseline:
 * - add table: nft's start and one netlink round trip;
 * - add chain: needs only the table cache;
 * - add rule: nft 1.0.6 first loads every chain and set of the table (its cache), to resolve
 *   jumps and set references;
 * - partial: the transaction kproxy writes when one endpoint of one service changes (run once,
 *   as after a real change; it is written to need only the table in nft's cache).
 *
 * Env: BENCH_SIZES (1000,10000), BENCH_FLOOR_RUNS (5). Needs root; removes its namespace.
 */
import { performance } from 'node:perf_hooks';
import { NftablesRenderer } from '../src/backends/nftables/render.js';
import { serializeFull, serializePartial, serializeStages } from '../src/backends/nftables/serialize.js';
import { STAGE_LINES } from '../src/backends/nftables/backend.js';
import type { EndpointSliceObject } from '../src/core/objects.js';
import { SnapshotBuilder } from '../src/core/snapshot.js';
import { textOf } from '../src/core/text.js';
import { cleanupStaleNetns, isRoot, type Netns } from '../src/platform/netns.js';
import { BENCH_RENDER_OPTS, generateCluster, toSourceEvents } from './cluster-gen.js';
import { freshNetns, median, ms } from './kproxy-proc.js';

const NODE = BENCH_RENDER_OPTS.nodeName;
const SIZES = (process.env.BENCH_SIZES ?? '1000,10000').split(',').map(Number);
const RUNS = Number(process.env.BENCH_FLOOR_RUNS ?? '5');
const PROBE_CHAIN = 'bench-floor-probe';

/** The full sync of n services as kproxy runs it (staging transactions, then the main one), and the partial text of one endpoint change after it. */
function texts(n: number): { full: string[]; partial: string } {
  const events = toSourceEvents((() => {
    const c = generateCluster({ services: n, endpointsPerService: 10, nodeName: NODE });
    return [...c.services, ...c.slices];
  })());
  const b = new SnapshotBuilder(NODE);
  for (const e of events) b.handle(e);
  const r = new NftablesRenderer(BENCH_RENDER_OPTS);
  const before = r.render(b.next());
  const { transactions, staged } = serializeStages(before, before.servicePorts.values(), STAGE_LINES);
  const full = [...transactions, serializeFull(before, { staged })].map(textOf);
  const slice = events.find((e) => e.kind === 'EndpointSlice')?.object as EndpointSliceObject;
  b.handle({ kind: 'EndpointSlice', type: 'update', previous: slice, object: { ...slice, endpoints: slice.endpoints.slice(1) } });
  const snap = b.next();
  const partial = textOf(serializePartial(r.render(snap), { changed: snap.changed, previous: before }));
  return { full, partial };
}

async function nftF(ns: Netns, text: string): Promise<number> {
  const t = performance.now();
  const r = await ns.exec('nft', ['-f', '-'], { input: text, timeoutMs: 900_000 });
  if (r.code !== 0) throw new Error(`nft -f: exit ${r.code}: ${r.stderr.slice(0, 300)}`);
  return performance.now() - t;
}

async function main(): Promise<void> {
  if (!isRoot()) {
    process.stderr.write('bench:nft-floor needs root (network namespaces)\n');
    process.exitCode = 1;
    return;
  }
  await cleanupStaleNetns('bench-floor');
  const rows: string[] = [];
  for (const n of SIZES) {
    const { full, partial } = texts(n);
    const ns = await freshNetns('bench-floor', (m) => process.stderr.write(`[bench:nft-floor] ${m}\n`));
    try {
      let load = 0;
      for (const text of full) load += await nftF(ns, text);
      const mb = full.reduce((a, t) => a + t.length, 0) / 1e6;
      process.stderr.write(`[bench:nft-floor] ${n} services: full ruleset (${mb.toFixed(1)} MB, ${full.length} transactions) applied in ${ms(load)}\n`);
      await nftF(ns, `add chain ip kube-proxy ${PROBE_CHAIN}\n`);
      const probes: [string, string][] = [
        ['add table', 'add table ip kube-proxy\n'],
        ['add chain', `add chain ip kube-proxy ${PROBE_CHAIN}\n`],
        ['add rule', `add rule ip kube-proxy ${PROBE_CHAIN} counter\n`],
      ];
      const medians = new Map<string, number>();
      for (const [name, text] of probes) {
        const times: number[] = [];
        for (let r = 0; r < RUNS; r++) times.push(await nftF(ns, text));
        medians.set(name, median(times));
      }
      medians.set(`partial (${(partial.length / 1e3).toFixed(1)} kB, once)`, await nftF(ns, partial));
      const base = medians.get('add table') ?? NaN;
      for (const [name, t] of medians) rows.push(`| ${n.toLocaleString('en')} | ${name} | ${ms(t)} | ${(t / base).toFixed(1)}× |`);
    } finally {
      await ns.destroy();
    }
  }
  process.stdout.write([
    '',
    `nft -f of one transaction against a table of N services × 10 endpoints (median of ${RUNS}; baseline: add table).`,
    '| services | transaction | nft -f | vs add table |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n'));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:nft-floor failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
