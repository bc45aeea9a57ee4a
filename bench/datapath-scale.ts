/**
 * bench:scale — first-packet connection latency to one service while N services are installed,
 * for nftables mode (one verdict-map lookup) and iptables mode (a linear walk of KUBE-SERVICES),
 * the seed's point about hashed versus linear rules. Everything runs in two throwaway network
 * namespaces (198.18.0.0/15 only); each measurement is 3 × 400 sequential connect + 1-byte-reply
 * round trips after a 5 s settle, median and p90, with ratios against N=10 measured in the same run. Needs root.
 */
import { renderIptables } from '../src/backends/iptables/render.js';
import { serializeFull as iptablesFull } from '../src/backends/iptables/serialize.js';
import { renderNftables } from '../src/backends/nftables/render.js';
import { serializeFull as nftFull } from '../src/backends/nftables/serialize.js';
import { namespacedName } from '../src/core/ids.js';
import type { EndpointSliceObject, ServiceObject } from '../src/core/objects.js';
import { SnapshotBuilder, type Snapshot } from '../src/core/snapshot.js';
import { createNetns, isRoot, linkNetns, type Netns } from '../src/platform/netns.js';

const POD = '198.18.10.2';
const NODE = '198.18.10.1';

function vip(i: number): string {
  return `198.19.${(i >>> 8) & 255}.${i & 255}`;
}

function snapshot(n: number): Snapshot {
  const b = new SnapshotBuilder('node');
  for (let i = 0; i < n; i++) {
    const name = `s${i}`;
    const svc: ServiceObject = {
      kind: 'Service', id: namespacedName('bench', name), namespace: 'bench', name, labels: {}, annotations: {}, type: 'ClusterIP',
      clusterIP: vip(i), clusterIPs: [vip(i)], ports: [{ name: 'p', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }],
      externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [], sessionAffinity: 'None', sessionAffinityTimeoutSeconds: 0,
      externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', healthCheckNodePort: 0, origin: { source: 'bench' },
    };
    const slice: EndpointSliceObject = {
      kind: 'EndpointSlice', id: namespacedName('bench', `${name}-1`), namespace: 'bench', name: `${name}-1`, serviceName: name, labels: {}, annotations: {},
      addressType: 'IPv4', ports: [{ name: 'p', protocol: 'TCP', port: 8080 }],
      endpoints: [{ addresses: [POD], conditions: { ready: true, serving: true, terminating: false } }], origin: { source: 'bench' },
    };
    b.handle({ kind: 'Service', type: 'add', object: svc });
    b.handle({ kind: 'EndpointSlice', type: 'add', object: slice });
  }
  return b.next();
}

const CLIENT = `
const net = require('node:net');
const [host, port, count] = process.argv.slice(1);
(async () => {
  const times = [];
  for (let i = 0; i < Number(count); i++) {
    const t0 = process.hrtime.bigint();
    await new Promise((resolve, reject) => {
      const s = net.connect({ host, port: Number(port) });
      s.setTimeout(3000, () => { s.destroy(); reject(new Error('timeout')); });
      s.once('data', () => { s.destroy(); resolve(); });
      s.once('error', reject);
    });
    times.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  process.stdout.write(JSON.stringify(times));
})().catch((e) => { console.error(String(e)); process.exit(1); });
`;
const SERVER = `
require('node:net').createServer((s) => { s.end('x'); }).listen(8080, '${POD}', () => console.log('ready'));
setTimeout(() => process.exit(0), 900000);
`;

function stat(xs: number[]): { median: number; p90: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)] ?? NaN, p90: s[Math.floor(s.length * 0.9)] ?? NaN };
}

async function measure(mode: 'nftables' | 'iptables', n: number): Promise<{ median: number; p90: number; applyMs: number }> {
  const made: Netns[] = [];
  try {
    const node = await createNetns('bench-scale');
    made.push(node);
    const pod = await createNetns('bench-scale');
    made.push(pod);
    await linkNetns(node, pod, { aCidr: `${NODE}/24`, bCidr: `${POD}/24` });
    await node.addRoute('198.19.0.0/16', { via: POD });
    const snap = snapshot(n);
    const opts = { nodeName: 'node', nodeIPs: [NODE], nodePortAddresses: [], clusterCIDRs: ['198.18.10.0/24'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4' as const };
    const t0 = performance.now();
    if (mode === 'nftables') {
      await node.execOk('nft', ['-f', '-'], { input: nftFull(renderNftables(snap, opts)).text, timeoutMs: 900_000 });
    } else {
      const text = iptablesFull(renderIptables(snap, { ...opts, localhostNodePorts: false }));
      await node.execOk('iptables-legacy-restore', ['--noflush'], { input: text, timeoutMs: 900_000 });
      await node.execOk('iptables-legacy', ['-t', 'nat', '-I', 'OUTPUT', '-j', 'KUBE-SERVICES']);
    }
    const applyMs = performance.now() - t0;
    const server = pod.spawn(process.execPath, ['-e', SERVER]);
    await server.waitForOutput('ready', 10_000);
    // Let the kernel settle after a large transaction (deferred frees), then three rounds of
    // 400 connections to the last service in rule order (the worst case for a linear walk).
    await new Promise((r) => setTimeout(r, 5000));
    const all: number[] = [];
    for (let round = 0; round < 3; round++) {
      const r = await node.execOk(process.execPath, ['-e', CLIENT, vip(n - 1), '80', '400'], { timeoutMs: 120_000 });
      all.push(...(JSON.parse(r.stdout) as number[]));
    }
    return { ...stat(all), applyMs };
  } finally {
    for (const ns of made.reverse()) await ns.destroy();
  }
}

async function main(): Promise<void> {
  if (!isRoot()) {
    process.stderr.write('bench:scale needs root (it builds network namespaces)\n');
    process.exit(1);
  }
  const sizes = (process.env.BENCH_SIZES ?? '10,1000,10000').split(',').map(Number);
  const lines = ['mode     | services | apply     | connect median | p90      | median vs 10 services'];
  const modes = (process.env.BENCH_MODES ?? 'nftables,iptables').split(',') as ('nftables' | 'iptables')[];
  for (const mode of modes) {
    let base = NaN;
    for (const n of sizes) {
      const m = await measure(mode, n);
      if (n === sizes[0]) base = m.median;
      lines.push(`${mode.padEnd(8)} | ${String(n).padStart(8)} | ${`${(m.applyMs / 1000).toFixed(1)} s`.padStart(9)} | ${`${m.median.toFixed(0)} µs`.padStart(14)} | ${`${m.p90.toFixed(0)} µs`.padStart(8)} | ${(m.median / base).toFixed(2)}×`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

void main();
