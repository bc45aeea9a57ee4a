/**
 * bench:datapath — what a connection costs through each way of reaching a Service, measured in
 * one run on one topology built from network namespaces only (198.18.0.0/15):
 *
 *   client 198.18.1.2 ── node 198.18.1.1 (kproxy / haproxy; br0 198.18.10.1) ── pod-1 198.18.10.2
 *                                                                           └── pod-2 198.18.10.3
 *
 * Part 1 (compare), for: direct to the pods (the client round-robins over them itself); kproxy
 * iptables mode; nftables mode; userspace mode through its ClusterIP (portal REDIRECT, what a
 * cluster gets) and through the node address (direct bind, the same path HAProxy has); HAProxy
 * in TCP mode, roundrobin over the same pods, nbthread = CPUs, no logging. Each round starts the
 * proxy, measures, stops it (by pid) and flushes the node's rules and conntrack; rounds are
 * interleaved (A B C … A B C …) so drift in this shared machine's load hits every backend alike.
 *   - setup latency: sequential connect + 1-byte request + 1-byte reply (median, p99);
 *   - connections/s: a fixed number of concurrent clients, each connect/request/reply/close in a
 *     loop, bounded by time and count;
 *   - bulk: one connection downloads BENCH_BULK_MB (default 256) MB, bounded by time.
 * Part 2 (scale), iptables and nftables: setup latency to the last service while 10 / 1,000 /
 * 10,000 services are installed (kproxy's backend, run in-process against one node namespace
 * per size, each with its own pod), sizes interleaved round by round, ratios against the smallest.
 *
 * Env: BENCH_PARTS (compare,scale) BENCH_ROUNDS (5) BENCH_BACKENDS BENCH_SCALE_SIZES
 * (10,1000,10000) BENCH_SCALE_MODES (nftables,iptables) BENCH_SCALE_ROUNDS (10) BENCH_SCALE_CONNECTS
 * (200 per size per round) BENCH_CONCURRENCY
 * (16) BENCH_CPU_PROF=DIR (kproxy runs with --cpu-prof into DIR) BENCH_NODE_FLAGS (more Node.js flags
 * for kproxy, e.g. "--max-semi-space-size=64"). Needs root and haproxy.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IptablesBackend } from '../src/backends/iptables/backend.js';
import { NftablesBackend } from '../src/backends/nftables/backend.js';
import type { Backend } from '../src/backends/backend.js';
import { namespacedName } from '../src/core/ids.js';
import type { EndpointSliceObject, ServiceObject } from '../src/core/objects.js';
import { SnapshotBuilder, type Snapshot } from '../src/core/snapshot.js';
import { memoryLogger } from '../src/observability/log.js';
import { ProxyMetrics } from '../src/observability/metrics.js';
import { realClock } from '../src/platform/clock.js';
import { Conntrack } from '../src/platform/conntrack.js';
import type { Exec } from '../src/platform/exec.js';
import { Iptables } from '../src/platform/iptables.js';
import { createNetns, isRoot, runHost, type Netns, type NetnsProcess } from '../src/platform/netns.js';
import { kernelQuiet } from './kproxy-proc.js';

const BIN = fileURLToPath(new URL('../../bin/kproxy.js', import.meta.url));
const CLIENT_IP = '198.18.1.2';
const NODE_IP = '198.18.1.1';
const GW = '198.18.10.1';
const PODS = ['198.18.10.2', '198.18.10.3'];
const POD_PORT = 8080;
const VIP = '198.19.0.10';
const HAPROXY_PORT = 81;

const env = (k: string, d: string): string => process.env[k] ?? d;
const ROUNDS = Number(env('BENCH_ROUNDS', '5'));
const CONCURRENCY = Number(env('BENCH_CONCURRENCY', '16'));
const BULK_MB = Number(env('BENCH_BULK_MB', '256'));
const LAT_COUNT = 300;
const CPS_MS = Number(env('BENCH_CPS_MS', '2000'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The load generator: one Node process per measurement, run in the client namespace. */
const CLIENT = String.raw`
const net = require('node:net');
const [mode, hostsArg, portArg, a1, a2, a3] = process.argv.slice(1);
const hosts = hostsArg.split(','); const port = Number(portArg);
let rr = 0;
function once(timeoutMs) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint(); let t1;
    const s = net.connect({ host: hosts[rr++ % hosts.length], port, noDelay: true });
    const timer = setTimeout(() => s.destroy(), timeoutMs);
    s.once('connect', () => s.write('r'));
    s.once('data', () => { t1 = process.hrtime.bigint(); });
    s.on('error', () => {});
    s.once('close', () => { clearTimeout(timer); resolve(t1 === undefined ? -1 : Number(t1 - t0) / 1e3); });
  });
}
(async () => {
  if (mode === 'lat') {
    const n = Number(a1), warm = Number(a2); const out = [];
    for (let i = 0; i < n + warm; i++) { const us = await once(3000); if (us < 0) throw new Error('connection failed'); if (i >= warm) out.push(us); }
    process.stdout.write(JSON.stringify(out));
  } else if (mode === 'cps') {
    const conc = Number(a1), ms = Number(a2), max = Number(a3);
    let started = 0, done = 0, errors = 0; const t0 = Date.now(); const end = t0 + ms;
    const worker = async () => { while (Date.now() < end && started < max) { started++; const us = await once(3000); if (us < 0) errors++; else done++; } };
    await Promise.all(Array.from({ length: conc }, worker));
    process.stdout.write(JSON.stringify({ done, errors, ms: Date.now() - t0 }));
  } else if (mode === 'bulk') {
    const bytes = Number(a1), ms = Number(a2); let got = 0; const t0 = process.hrtime.bigint();
    await new Promise((resolve) => {
      const s = net.connect({ host: hosts[0], port });
      const timer = setTimeout(() => s.destroy(), ms);
      s.once('connect', () => s.write('b' + bytes + '\n'));
      s.on('data', (d) => { got += d.length; });
      s.on('error', () => {});
      s.once('close', () => { clearTimeout(timer); resolve(); });
    });
    process.stdout.write(JSON.stringify({ bytes: got, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  }
})().catch((e) => { console.error(String(e)); process.exit(1); });
`;

/** Each pod: 'r' → one byte back and close; 'b<N>\n' → N bytes, then close. */
const SERVER = String.raw`
const net = require('node:net');
const [ip, port] = process.argv.slice(1);
const chunk = Buffer.alloc(1 << 20, 120);
net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => {});
  s.once('data', (d) => {
    if (d[0] === 114) { s.end('x'); return; }
    let left = Number(d.toString('latin1', 1).trim());
    const pump = () => {
      while (left > 0) { const n = Math.min(left, chunk.length); left -= n; if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { s.once('drain', pump); return; } }
      s.end();
    };
    pump();
  });
}).listen(Number(port), ip, () => console.log('ready'));
setTimeout(() => process.exit(0), 3600000);
`;

interface Topology {
  readonly client: Netns;
  readonly node: Netns;
  readonly all: Netns[];
}

async function ipn(ns: Netns, args: string[]): Promise<void> {
  const r = await runHost('ip', ['-n', ns.name, ...args]);
  if (r.code !== 0) throw new Error(`ip -n ${ns.name} ${args.join(' ')}: ${r.stderr.trim()}`);
}

async function buildTopology(all: Netns[]): Promise<Topology> {
  // An earlier bench's big namespace may still be being removed by the kernel.
  await kernelQuiet((m) => process.stderr.write(`[bench:datapath] ${m}\n`));
  const mk = async (): Promise<Netns> => {
    const ns = await createNetns('bench-dp');
    all.push(ns);
    return ns;
  };
  const client = await mk();
  const node = await mk();
  await ipn(client, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.name]);
  await ipn(client, ['addr', 'add', `${CLIENT_IP}/24`, 'dev', 'eth0']);
  await ipn(client, ['link', 'set', 'eth0', 'up']);
  await ipn(node, ['addr', 'add', `${NODE_IP}/24`, 'dev', 'eth0']);
  await ipn(node, ['link', 'set', 'eth0', 'up']);
  await ipn(client, ['link', 'set', 'lo', 'up']);
  await client.addRoute('198.18.10.0/24', { via: NODE_IP });
  await client.addRoute('198.19.0.0/16', { via: NODE_IP });
  await ipn(node, ['link', 'add', 'br0', 'type', 'bridge']);
  await ipn(node, ['addr', 'add', `${GW}/24`, 'dev', 'br0']);
  await ipn(node, ['link', 'set', 'br0', 'up']);
  await node.sysctl('net.ipv4.ip_forward', '1');
  // Many short connections per round: a wide port range, and TIME_WAIT reuse on the client.
  for (const ns of [client, node]) await ns.sysctl('net.ipv4.ip_local_port_range', '1024 65000');
  await client.sysctl('net.ipv4.tcp_tw_reuse', '1');
  for (const [i, ip] of PODS.entries()) {
    const pod = await mk();
    await ipn(node, ['link', 'add', `v-pod${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
    await ipn(node, ['link', 'set', `v-pod${i}`, 'master', 'br0', 'up']);
    await ipn(pod, ['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await ipn(pod, ['link', 'set', 'eth0', 'up']);
    await ipn(pod, ['link', 'set', 'lo', 'up']);
    await pod.addRoute('198.18.0.0/15', { via: GW });
    // The load generator reuses client ports far faster than a real client population: a SYN
    // that met the pod's TIME_WAIT socket of an earlier connection with the same 4-tuple was
    // refused and retried after 1 s (p99 ≈ 1 s, conn/s of the DNAT modes falling round after
    // round). Pods therefore keep no TIME_WAIT sockets; this applies to every backend alike.
    await pod.sysctl('net.ipv4.tcp_max_tw_buckets', '0');
    const server = pod.spawn(process.execPath, ['-e', SERVER, ip, String(POD_PORT)]);
    await server.waitForOutput('ready', 10_000);
  }
  return { client, node, all };
}

async function runClient(topo: Topology, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await topo.client.execOk(process.execPath, ['-e', CLIENT, ...args], { timeoutMs });
  return r.stdout;
}

interface Target {
  readonly hosts: string;
  readonly port: number;
}

async function waitServing(topo: Topology, t: Target, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await topo.client.exec(process.execPath, ['-e', CLIENT, 'lat', t.hosts, String(t.port), '3', '0'], { timeoutMs: 15_000 });
    if (r.code === 0) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start serving ${t.hosts}:${t.port}: ${r.stderr.trim()}`);
    await sleep(200);
  }
}

// ---------- part 1: backends compared ----------

const SERVICE_YAML = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec:
  clusterIP: ${VIP}
  externalIPs: [${NODE_IP}]
  ports: [{name: http, protocol: TCP, port: 80, targetPort: ${POD_PORT}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: bench
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: ${POD_PORT}}]
endpoints:
${PODS.map((p) => `- addresses: [${p}]`).join('\n')}
`;

function haproxyConfig(): string {
  return `global
    nbthread ${cpus().length}
    maxconn 8000
defaults
    mode tcp
    balance roundrobin
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend web
    bind ${NODE_IP}:${HAPROXY_PORT}
    default_backend pods
backend pods
${PODS.map((p, i) => `    server pod${i + 1} ${p}:${POD_PORT}`).join('\n')}
`;
}

interface BackendDef {
  readonly name: string;
  readonly target: Target;
  /** Starts what serves the target; returns the process to stop (none for direct). */
  start?(topo: Topology, dir: string): NetnsProcess;
}

function kproxy(mode: string): (topo: Topology, dir: string) => NetnsProcess {
  return (topo, dir) => {
    const prof = process.env.BENCH_CPU_PROF;
    const node = [...(prof ? ['--cpu-prof', '--cpu-prof-interval', '200', '--cpu-prof-dir', prof] : []), ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)];
    return topo.node.spawn(process.execPath, [...node, BIN, '--proxy-mode', mode, '--manifests', join(dir, 'manifests'),
      '--hostname-override', 'node', '--cluster-cidr', '198.18.10.0/24', '--conntrack-max-per-core', '0',
      '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249', '-v', '0']);
  };
}

const BACKENDS: BackendDef[] = [
  { name: 'direct', target: { hosts: PODS.join(','), port: POD_PORT } },
  { name: 'iptables', target: { hosts: VIP, port: 80 }, start: kproxy('iptables') },
  { name: 'nftables', target: { hosts: VIP, port: 80 }, start: kproxy('nftables') },
  { name: 'userspace', target: { hosts: VIP, port: 80 }, start: kproxy('userspace') },
  { name: 'userspace-nodeip', target: { hosts: NODE_IP, port: 80 }, start: kproxy('userspace') },
  {
    name: 'haproxy', target: { hosts: NODE_IP, port: HAPROXY_PORT },
    start: (topo, dir) => topo.node.spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]),
  },
];

interface RoundResult {
  lat: number[];
  cps: number;
  cpsErrors: number;
  mbps: number;
  /** CPU the proxy process used (user + system, all threads) per connection, µs; NaN without a process. */
  cpuPerConn: number;
  /** The system (kernel) part of cpuPerConn, µs: the syscalls, and the TCP work they carry. */
  sysPerConn: number;
  /** CPU the proxy process used per GB relayed, s. */
  cpuPerGB: number;
}

/**
 * CPU time of a process and all its threads, in seconds (from /proc/PID/stat, 100 Hz ticks):
 * user + system, and the system part alone.
 */
function cpuSeconds(pid: number | undefined): { total: number; sys: number } {
  if (pid === undefined) return { total: NaN, sys: NaN };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { total: (Number(f[11]) + Number(f[12])) / 100, sys: Number(f[12]) / 100 };
  } catch {
    return { total: NaN, sys: NaN };
  }
}

async function resetNode(topo: Topology): Promise<void> {
  await topo.node.exec('nft', ['flush', 'ruleset']);
  await topo.node.exec('conntrack', ['-F']);
}

async function measureBackend(topo: Topology, b: BackendDef, dir: string): Promise<RoundResult> {
  const proc = b.start?.(topo, dir);
  try {
    await waitServing(topo, b.target, b.name).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${proc?.stdout() ?? ''}${proc?.stderr() ?? ''}`);
    });
    const { hosts, port } = b.target;
    const lat = JSON.parse(await runClient(topo, ['lat', hosts, String(port), String(LAT_COUNT), '30'])) as number[];
    const cpu0 = cpuSeconds(proc?.pid);
    const c = JSON.parse(await runClient(topo, ['cps', hosts, String(port), String(CONCURRENCY), String(CPS_MS), '200000'])) as { done: number; errors: number; ms: number };
    const cpu1 = cpuSeconds(proc?.pid);
    const bulk = JSON.parse(await runClient(topo, ['bulk', hosts.split(',')[0] ?? hosts, String(port), String(BULK_MB * 1048576), '20000'])) as { bytes: number; ms: number };
    const cpu2 = cpuSeconds(proc?.pid);
    return {
      lat, cps: (c.done / c.ms) * 1000, cpsErrors: c.errors, mbps: bulk.bytes / 1048576 / (bulk.ms / 1000),
      cpuPerConn: ((cpu1.total - cpu0.total) / c.done) * 1e6, sysPerConn: ((cpu1.sys - cpu0.sys) / c.done) * 1e6,
      cpuPerGB: (cpu2.total - cpu1.total) / (bulk.bytes / 1e9),
    };
  } finally {
    if (proc) {
      const exit = await proc.stop({ timeoutMs: 5000 });
      if (exit.code !== 0 && exit.signal === null && b.name !== 'haproxy') process.stderr.write(`${b.name} exited ${exit.code}: ${proc.stderr().slice(-2000)}\n`);
    }
    await resetNode(topo);
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? NaN;
}

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i] ?? 0) : c.padStart(w[i] ?? 0))).join(' | ')} |`;
  return [line(header), `|${w.map((n, i) => (i === 0 ? ` ${'-'.repeat(n)} ` : ` ${'-'.repeat(n - 1)}: `)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function compare(topo: Topology, dir: string): Promise<string> {
  const names = (process.env.BENCH_BACKENDS ?? BACKENDS.map((b) => b.name).join(',')).split(',');
  const chosen = names.map((n) => {
    const b = BACKENDS.find((x) => x.name === n);
    if (!b) throw new Error(`BENCH_BACKENDS: unknown backend ${n} (known: ${BACKENDS.map((x) => x.name).join(', ')})`);
    return b;
  });
  mkdirManifests(dir);
  const results = new Map<string, RoundResult[]>(chosen.map((b) => [b.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const b of chosen) {
      const r = await measureBackend(topo, b, dir);
      results.get(b.name)?.push(r);
      process.stderr.write(`round ${round + 1}/${ROUNDS} ${b.name}: ${median(r.lat).toFixed(0)} µs, ${r.cps.toFixed(0)} conn/s (${r.cpsErrors} errors, ${r.cpuPerConn.toFixed(0)} µs CPU/conn, ${r.sysPerConn.toFixed(0)} µs of it system), ${r.mbps.toFixed(0)} MB/s (${r.cpuPerGB.toFixed(2)} s CPU/GB)\n`);
    }
  }
  const summary = new Map([...results].map(([name, rs]) => [name, {
    lat: median(rs.map((r) => median(r.lat))),
    p99: pct(rs.flatMap((r) => r.lat), 0.99),
    cps: median(rs.map((r) => r.cps)),
    errors: rs.reduce((a, r) => a + r.cpsErrors, 0),
    mbps: median(rs.map((r) => r.mbps)),
    cpuPerConn: median(rs.map((r) => r.cpuPerConn)),
    sysPerConn: median(rs.map((r) => r.sysPerConn)),
    cpuPerGB: median(rs.map((r) => r.cpuPerGB)),
  }]));
  const direct = summary.get('direct');
  const ha = summary.get('haproxy');
  const ratio = (v: number, base: number | undefined): string => (base === undefined ? '–' : `${(v / base).toFixed(2)}×`);
  const rows = [...summary].map(([name, s]) => [
    name, `${s.lat.toFixed(0)} µs`, `${s.p99.toFixed(0)} µs`, ratio(s.lat, direct?.lat), ratio(s.lat, ha?.lat),
    `${s.cps.toFixed(0)}${s.errors ? ` (${s.errors} err)` : ''}`, ratio(s.cps, direct?.cps), ratio(s.cps, ha?.cps),
    `${s.mbps.toFixed(0)}`, ratio(s.mbps, direct?.mbps), ratio(s.mbps, ha?.mbps),
  ]);
  // Kernel modes relay in softirq, not in a process: only the proxies that relay have a figure.
  const cpuRows = [...summary].filter(([name]) => name === 'haproxy' || name.startsWith('userspace')).map(([name, s]) => [
    name, `${s.cpuPerConn.toFixed(0)} µs`, `${s.sysPerConn.toFixed(0)} µs`, ha ? `${(ha.cpuPerConn / s.cpuPerConn).toFixed(2)}×` : '–',
    `${s.cpuPerGB.toFixed(2)} s`, ha ? `${(ha.cpuPerGB / s.cpuPerGB).toFixed(2)}×` : '–',
  ]);
  return `${table(['path', 'setup median', 'p99', 'vs direct', 'vs haproxy', `conn/s (${CONCURRENCY} conc.)`, 'vs direct', 'vs haproxy', `bulk MB/s`, 'vs direct', 'vs haproxy'], rows)}

Proxy process CPU (user + system, all threads, from /proc; the efficiency a shared machine cannot blur; "haproxy ÷ this" above 1 means cheaper than HAProxy):

${table(['proxy', 'CPU per connection', 'of it system', 'haproxy ÷ this', 'CPU per GB relayed', 'haproxy ÷ this'], cpuRows)}`;
}

function mkdirManifests(dir: string): void {
  rmSync(join(dir, 'manifests'), { recursive: true, force: true });
  mkdirSync(join(dir, 'manifests'), { recursive: true });
  writeFileSync(join(dir, 'manifests', 'web.yaml'), SERVICE_YAML);
  writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig());
}

// ---------- part 2: service count ----------
//
// One node namespace per size, each with its own pod, all reachable from the client over their
// own links: every size's rules are applied once (a 10,000-service transaction takes minutes on
// this machine), then the latency measurements go round the sizes many times (A B C A B C …), so
// the machine's drifting load hits every size alike.

function scaleVip(size: number, i: number): string {
  return `198.19.${size * 64 + ((i >>> 8) & 63)}.${i & 255}`;
}

function scaleSnapshot(k: number, n: number): Snapshot {
  const b = new SnapshotBuilder('node');
  for (let i = 0; i < n; i++) {
    const name = `s${i}`;
    const ip = scaleVip(k, i);
    const svc: ServiceObject = {
      kind: 'Service', id: namespacedName('bench', name), namespace: 'bench', name, labels: {}, annotations: {}, type: 'ClusterIP',
      clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'p', protocol: 'TCP', port: 80, targetPort: POD_PORT, nodePort: 0 }],
      externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [], sessionAffinity: 'None', sessionAffinityTimeoutSeconds: 0,
      externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', healthCheckNodePort: 0, origin: { source: 'bench' },
    };
    const slice: EndpointSliceObject = {
      kind: 'EndpointSlice', id: namespacedName('bench', `${name}-1`), namespace: 'bench', name: `${name}-1`, serviceName: name, labels: {}, annotations: {},
      addressType: 'IPv4', ports: [{ name: 'p', protocol: 'TCP', port: POD_PORT }],
      endpoints: [{ addresses: [PODS[0] as string], conditions: { ready: true, serving: true, terminating: false } }], origin: { source: 'bench' },
    };
    b.handle({ kind: 'Service', type: 'add', object: svc });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: slice });
  }
  return b.next();
}

function kernelBackend(mode: string, node: Netns, nodeIP: string): Backend {
  // A 10,000-service transaction on this loaded machine can outlast the harness's 30 s default.
  const exec: Exec = (cmd, args, options) => node.exec(cmd, args, { ...options, timeoutMs: 900_000 });
  const log = memoryLogger(0);
  const metrics = new ProxyMetrics();
  const render = { nodeName: 'node', nodeIPs: [nodeIP], nodePortAddresses: [], clusterCIDRs: ['198.18.10.0/24'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4' as const };
  return mode === 'nftables'
    ? new NftablesBackend({ exec, conntrack: new Conntrack(exec), clock: realClock, log, metrics, render })
    : new IptablesBackend({ iptables: new Iptables({ exec }), conntrack: new Conntrack(exec), log, metrics, render: { ...render, localhostNodePorts: false } });
}

/** A node namespace linked to the client (198.18.(2+k).0/24) with one pod behind a bridge. */
async function scaleNode(topo: Topology, k: number): Promise<Netns> {
  const node = await createNetns('bench-dp');
  topo.all.push(node);
  const cIf = `sc${k}`;
  const clientIP = `198.18.${2 + k}.2`;
  const nodeIP = `198.18.${2 + k}.1`;
  await ipn(topo.client, ['link', 'add', cIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.name]);
  await ipn(topo.client, ['addr', 'add', `${clientIP}/24`, 'dev', cIf]);
  await ipn(topo.client, ['link', 'set', cIf, 'up']);
  await topo.client.addRoute(`198.19.${k * 64}.0/18`, { via: nodeIP });
  await ipn(node, ['addr', 'add', `${nodeIP}/24`, 'dev', 'eth0']);
  await ipn(node, ['link', 'set', 'eth0', 'up']);
  await ipn(node, ['link', 'add', 'br0', 'type', 'bridge']);
  await ipn(node, ['addr', 'add', `${GW}/24`, 'dev', 'br0']);
  await ipn(node, ['link', 'set', 'br0', 'up']);
  await node.sysctl('net.ipv4.ip_forward', '1');
  const pod = await createNetns('bench-dp');
  topo.all.push(pod);
  const ip = PODS[0] as string;
  await ipn(node, ['link', 'add', 'v-pod', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
  await ipn(node, ['link', 'set', 'v-pod', 'master', 'br0', 'up']);
  await ipn(pod, ['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  await ipn(pod, ['link', 'set', 'eth0', 'up']);
  await pod.addRoute('198.18.0.0/15', { via: GW });
  const server = pod.spawn(process.execPath, ['-e', SERVER, ip, String(POD_PORT)]);
  await server.waitForOutput('ready', 10_000);
  return node;
}

async function scale(topo: Topology): Promise<string> {
  const sizes = env('BENCH_SCALE_SIZES', '10,1000,10000').split(',').map(Number);
  const modes = env('BENCH_SCALE_MODES', 'nftables,iptables').split(',');
  const rounds = Number(env('BENCH_SCALE_ROUNDS', '10'));
  const perRound = Number(env('BENCH_SCALE_CONNECTS', '200'));
  const nodes: Netns[] = [];
  for (const [k] of sizes.entries()) nodes.push(await scaleNode(topo, k));
  const rows: string[][] = [];
  for (const mode of modes) {
    const applyMs: number[] = [];
    for (const [k, n] of sizes.entries()) {
      const node = nodes[k] as Netns;
      await resetNode({ ...topo, node });
      const t0 = performance.now();
      await kernelBackend(mode, node, `198.18.${2 + k}.1`).sync(scaleSnapshot(k, n));
      applyMs.push(performance.now() - t0);
      process.stderr.write(`scale ${mode} ${n}: applied in ${(applyMs[k] ?? 0).toFixed(0)} ms\n`);
    }
    await sleep(3000); // let the kernel finish deferred work after the big transactions
    const lat: number[][][] = sizes.map(() => []);
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [...sizes.keys()] : [...sizes.keys()].reverse();
      for (const k of order) {
        const n = sizes[k] as number;
        const t = { hosts: scaleVip(k, n - 1), port: 80 };
        if (round === 0) await waitServing(topo, t, `${mode} with ${n} services`);
        const xs = JSON.parse(await runClient(topo, ['lat', t.hosts, '80', String(perRound), '20'])) as number[];
        lat[k]?.push(xs);
      }
      process.stderr.write(`scale ${mode} round ${round + 1}/${rounds}: ${sizes.map((n, k) => `${n}: ${median(lat[k]?.at(-1) ?? []).toFixed(0)} µs`).join(', ')}\n`);
    }
    const base = median(lat[0]?.map(median) ?? []);
    for (const [k, n] of sizes.entries()) {
      const m = median(lat[k]?.map(median) ?? []);
      const wins = lat[k]?.filter((xs, r) => median(xs) <= median(lat[0]?.[r] ?? [])).length ?? 0;
      rows.push([mode, String(n), `${((applyMs[k] ?? NaN) / 1000).toFixed(1)} s`, `${m.toFixed(0)} µs`, `${pct(lat[k]?.flat() ?? [], 0.99).toFixed(0)} µs`,
        `${(m / base).toFixed(2)}×`, k === 0 ? '–' : `${wins}/${rounds}`]);
    }
    for (const node of nodes) await resetNode({ ...topo, node });
  }
  return table(['mode', 'services', 'full sync', 'setup median', 'p99', `vs ${sizes[0]} services`, `rounds at or below ${sizes[0]}`], rows);
}

async function main(): Promise<void> {
  if (!isRoot()) {
    process.stderr.write('bench:datapath needs root (it builds network namespaces)\n');
    process.exit(1);
  }
  const parts = env('BENCH_PARTS', 'compare,scale').split(',');
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-bench-dp-'));
  const all: Netns[] = [];
  const out: string[] = [];
  try {
    const topo = await buildTopology(all);
    if (parts.includes('compare')) out.push(`Backends compared (${ROUNDS} interleaved rounds; setup = connect + 1-byte request/reply; bulk = ${BULK_MB} MB over one connection):\n\n${await compare(topo, dir)}`);
    if (parts.includes('scale')) out.push(`Setup latency with N services installed (last service; rounds interleave the sizes):\n\n${await scale(topo)}`);
  } finally {
    for (const ns of all.reverse()) await ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${out.join('\n\n')}\n`);
}

void main().catch((err: unknown) => {
  process.stderr.write(`bench:datapath: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
