/**
 * bench:latency — from an EndpointSlice change arriving to the kernel's rules reflecting it, at
 * N services × 10 endpoints (default 10,000), with --iptables-min-sync-period 0 (kproxy's one
 * minimum-sync-period flag; it applies to nftables mode too), for each kernel mode and source:
 * - manifests: the change is a rewrite of one manifest file (50 slices) in the --manifests folder;
 * - apiserver: the test API server (test/helpers/apiserver.ts, in a child process inside the
 *   namespace so kproxy reaches it on 127.0.0.1) applies the slice and sends the watch event.
 * Each change replaces one endpoint of one service with a new, unique pod IP (198.19.240.0/20).
 * "Reflected": nftables — `nft monitor rules` in the namespace prints the new endpoint's
 * `dnat to <ip>` rule (a netlink event as the kernel commits it); iptables (legacy, as a node
 * marked by kubelet) has no change events, and polling iptables-save at 10k costs seconds and
 * competes for the CPU, so it is kproxy's "synced proxy rules" line, printed after
 * iptables-restore has returned (the kernel has committed); the last change is then checked with
 * `iptables -S` of its endpoint chain. iptables-nft (BENCH_MODES=iptables-nft): iptables mode on
 * a node whose hint chain is in iptables-nft, measured the same way. Median and p99 over BENCH_LATENCY_CHANGES (50) changes or
 * as many as fit in BENCH_LATENCY_BUDGET_S (240) per mode and source.
 *
 * Above BENCH_NFT_MONITOR_MAX (2000) services nft monitor never starts listening in time (it
 * loads the whole ruleset first: over 15 minutes at 10,000), so nftables uses kproxy's line too.
 * Env: BENCH_LATENCY_SERVICES (10000), BENCH_MODES (iptables,nftables), BENCH_SOURCES
 * (manifests,apiserver), BENCH_LATENCY_CHANGES (50), BENCH_LATENCY_BUDGET_S (240),
 * BENCH_TOOL_TIMEOUT_S (900, per wait). Needs root.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { endpointChainName } from '../src/backends/iptables/names.js';
import { servicePortName, namespacedName } from '../src/core/ids.js';
import { cleanupStaleNetns, isRoot, type Netns, type NetnsProcess } from '../src/platform/netns.js';
import { generateCluster, writeManifests, writeSliceFile, type Raw } from './cluster-gen.js';
import { freshNetns, median, ms, percentile, startKproxy } from './kproxy-proc.js';

/** iptables-nft: iptables mode on a node whose iptables is the nf_tables backend (kubelet's hint chain there). */
type Mode = 'iptables' | 'nftables' | 'iptables-nft';
type SourceKind = 'manifests' | 'apiserver';

const NODE = 'bench-node';
const env = (k: string, d: string): string => process.env[k] ?? d;
const N = Number(env('BENCH_LATENCY_SERVICES', '10000'));
const MODES = env('BENCH_MODES', 'iptables,nftables').split(',') as Mode[];
const SOURCES = env('BENCH_SOURCES', 'manifests,apiserver').split(',') as SourceKind[];
const CHANGES = Number(env('BENCH_LATENCY_CHANGES', '50'));
const BUDGET_MS = Number(env('BENCH_LATENCY_BUDGET_S', '240')) * 1000;
const WAIT_MS = Number(env('BENCH_TOOL_TIMEOUT_S', '900')) * 1000;
const MONITOR_MAX = Number(env('BENCH_NFT_MONITOR_MAX', '2000'));
const APISERVER_JS = fileURLToPath(new URL('./apiserver-proc.js', import.meta.url));

function log(msg: string): void {
  process.stderr.write(`[bench:latency ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function markerIP(k: number): string {
  return `198.19.${240 + ((k >>> 8) & 15)}.${k & 255}`;
}

/** Lines of a child's stdout as they arrive, timestamped; waitFor resolves on the first match after `from`. */
function lineWatcher(p: NetnsProcess): { waitFor(re: RegExp | string, from: number, timeoutMs: number): Promise<number> } {
  const lines: { at: number; text: string }[] = [];
  const waiters: { test: (t: string) => boolean; from: number; resolve: (at: number) => void }[] = [];
  let buf = '';
  p.child.stdout?.on('data', (chunk: Buffer) => {
    const at = performance.now();
    buf += chunk.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push({ at, text });
      if (lines.length > 10_000) lines.splice(0, 5_000);
      for (const w of [...waiters]) {
        if (at >= w.from && w.test(text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(at);
        }
      }
    }
  });
  return {
    waitFor(re, from, timeoutMs) {
      const test = (t: string): boolean => (typeof re === 'string' ? t.includes(re) : re.test(t));
      const seen = lines.find((l) => l.at >= from && test(l.text));
      if (seen) return Promise.resolve(seen.at);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${String(re)} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ test, from, resolve: (at) => { clearTimeout(timer); resolve(at); } });
      });
    },
  };
}

/** The generated Service's (first port's) protocol, as iptables names it: the DNAT rule matches it. */
function protocolOf(service: Raw | undefined): string {
  const ports = ((service?.spec as Raw | undefined)?.ports ?? []) as Raw[];
  return String(ports[0]?.protocol ?? 'TCP').toLowerCase();
}

interface Result {
  readonly mode: Mode;
  readonly source: SourceKind;
  readonly reflected: number[];
  readonly synced: number[];
  readonly syncElapsed: number[];
  readonly note: string;
}

async function run(mode: Mode, source: SourceKind, ns: Netns, dir: string): Promise<Result> {
  const cluster = generateCluster({ services: N, endpointsPerService: 10, nodeName: NODE });
  const slices = [...cluster.slices];
  const iptables = mode === 'nftables' ? undefined : mode === 'iptables' ? 'iptables-legacy' : 'iptables-nft';
  if (iptables) await ns.execOk(iptables, ['-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
  const args = ['--proxy-mode', iptables ? 'iptables' : mode, '--hostname-override', NODE, '-v', '2', '--cluster-cidr', '198.18.0.0/16', '--conntrack-max-per-core', '0',
    '--iptables-min-sync-period', '0', '--healthz-bind-address', '', '--metrics-bind-address', ''];
  let api: NetnsProcess | undefined;
  let apply: (slice: Raw, i: number) => void;
  if (source === 'manifests') {
    writeManifests(cluster, dir);
    args.push('--manifests', dir);
    apply = (slice, i) => {
      slices[i] = slice;
      writeSliceFile(slices, dir, i);
    };
  } else {
    const objects = join(dir, 'objects.json');
    writeFileSync(objects, JSON.stringify([...cluster.services, ...cluster.slices]));
    const kubeconfig = join(dir, 'kubeconfig');
    api = ns.spawn(process.execPath, [APISERVER_JS, objects, kubeconfig]);
    await api.waitForOutput('ready', 300_000);
    args.push('--kubeconfig', kubeconfig);
    const stdin = api.child.stdin;
    apply = (slice) => {
      stdin?.write(JSON.stringify(slice) + '\n');
    };
  }
  log(`${mode}/${source}: starting kproxy with ${N} services`);
  const kp = startKproxy(ns, args);
  const reflected: number[] = [];
  const synced: number[] = [];
  const syncElapsed: number[] = [];
  let note = '';
  try {
    await kp.waitSync(1, WAIT_MS);
    log(`${mode}/${source}: first sync done after ${ms(performance.now() - kp.started)}`);
    // stdbuf: nft's stdout into a pipe is block-buffered, which would hold the lines back.
    // Above MONITOR_MAX services `nft monitor` (nft 1.0.6) spends longer than the run loading the
    // ruleset before it listens: the kproxy line (after `nft -f` returned) stands in, as for iptables.
    const monitor = mode === 'nftables' && N <= MONITOR_MAX ? ns.spawn('stdbuf', ['-oL', 'nft', 'monitor', 'rules']) : undefined;
    if (mode === 'nftables' && !monitor) note = `kproxy's line after nft -f returned (nft monitor does not start in time above ${MONITOR_MAX} services)`;
    const mon = monitor ? lineWatcher(monitor) : undefined;
    if (monitor && mon) {
      // nft monitor loads the ruleset before it listens (minutes at 10k): probe until it prints.
      let ready = false;
      const until = performance.now() + WAIT_MS;
      for (let p = 0; performance.now() < until && !ready; p++) {
        const from = performance.now();
        await ns.execOk('nft', ['-f', '-'], { input: `add table ip bench-probe\nadd chain ip bench-probe c\nadd rule ip bench-probe c counter comment "probe-${p}"\n` });
        ready = await mon.waitFor(`probe-${p}`, from, 5000).then(() => true, () => false);
      }
      await ns.execOk('nft', ['delete', 'table', 'ip', 'bench-probe']);
      if (!ready) throw new Error('nft monitor never started listening');
    }
    const deadline = performance.now() + BUDGET_MS;
    let lastSlice: { ip: string; i: number; proto: string } | undefined;
    for (let k = 0; k < CHANGES && performance.now() < deadline; k++) {
      // Services without affinity, spread over the cluster.
      let i = (11 + k * 197) % N;
      while (i % 7 === 0) i = (i + 1) % N;
      const old = slices[i];
      if (!old) break;
      const ip = markerIP(k);
      const eps = old.endpoints as Raw[];
      const slice: Raw = { ...old, endpoints: [{ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-x' }, ...eps.slice(1)] };
      const before = kp.syncs.length;
      const t0 = performance.now();
      apply(slice, i);
      const sync = await kp.waitChangeSync(before, WAIT_MS);
      const seen = mon ? await mon.waitFor(`dnat to ${ip}:8080`, t0, WAIT_MS).catch((err: unknown) => {
        throw new Error(`${err instanceof Error ? err.message : String(err)}; nft monitor output tail: ${monitor?.stdout().slice(-600) ?? ''} ${monitor?.stderr().slice(-300) ?? ''}`);
      }) : sync.at;
      reflected.push(seen - t0);
      synced.push(sync.at - t0);
      syncElapsed.push(sync.elapsedMs);
      slices[i] = slice;
      lastSlice = { ip, i, proto: protocolOf(cluster.services[i]) };
      await new Promise((r) => setTimeout(r, 20));
    }
    if (iptables && lastSlice) {
      const spn = servicePortName(namespacedName('bench', `svc-${lastSlice.i}`), 'p');
      const { proto } = lastSlice;
      const sep = endpointChainName(spn, proto, `${lastSlice.ip}:8080`);
      // The endpoint chain's listing, not `-C` of one exact rule: below 1,000 endpoints the rule
      // also carries a comment (upstream drops comments only in large clusters).
      const r = await ns.exec(iptables, ['-t', 'nat', '-S', sep], { timeoutMs: 120_000 });
      const found = r.code === 0 && r.stdout.includes(`-j DNAT --to-destination ${lastSlice.ip}:8080`);
      note = found ? 'last change verified in the kernel (iptables -S)' : `last change NOT found in the kernel: ${(r.stderr || r.stdout).trim()}`;
      if (!found) log(`${mode}/${source}: last change (${lastSlice.ip} in svc-${lastSlice.i}) not in the kernel; kproxy's log tail:\n${kp.proc.stderr().slice(-8000)}`);
    }
    await monitor?.stop({ timeoutMs: 5_000 });
  } finally {
    await kp.stop();
    if (api) {
      api.child.stdin?.end();
      await api.stop({ timeoutMs: 5_000 });
    }
  }
  return { mode, source, reflected, synced, syncElapsed, note };
}

async function main(): Promise<void> {
  if (!isRoot()) {
    process.stderr.write('bench:latency needs root (network namespaces)\n');
    process.exitCode = 1;
    return;
  }
  await cleanupStaleNetns('bench-lat');
  const results: Result[] = [];
  for (const mode of MODES) {
    for (const source of SOURCES) {
      const dir = mkdtempSync(join(tmpdir(), 'kproxy-bench-lat-'));
      const ns = await freshNetns('bench-lat', log);
      try {
        const r = await run(mode, source, ns, dir);
        results.push(r);
        process.stdout.write(`${mode} ${source}: n=${r.reflected.length} median ${ms(median(r.reflected))} p99 ${ms(percentile(r.reflected, 99))}\n`);
      } catch (err) {
        log(`${mode}/${source} failed: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        await ns.destroy();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const pad = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  process.stdout.write([
    '',
    `Change-to-rules latency, ${N.toLocaleString('en')} services × 10 endpoints, --iptables-min-sync-period 0.`,
    'reflected: nftables = `nft monitor` shows the new DNAT rule; iptables, iptables-nft = kproxy logged the sync (after iptables-legacy-restore / iptables-nft-restore returned).',
    pad(['mode', 'source', 'changes', 'reflected median', 'reflected p99', 'kproxy synced median', 'kproxy sync alone median', 'note']),
    pad(Array(8).fill('---')),
    ...results.map((r) => pad([r.mode, r.source, String(r.reflected.length), ms(median(r.reflected)), ms(percentile(r.reflected, 99)),
      ms(median(r.synced)), ms(median(r.syncElapsed)), r.note])),
    '',
  ].join('\n'));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:latency failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
