/**
 * bench:sync — iptables mode's control-plane cost against the kernel tool's own cost.
 * For N services × 10 endpoints: render, serialize (median of runs), and `iptables-restore`
 * applying the same text inside a throwaway network namespace (the floor of any sync), then a
 * one-endpoint partial sync. Prints a table; ratios are against the restore measured in the
 * same run. Needs root for the restore columns (skipped otherwise). Bounded: sizes are fixed.
 */
import { performance } from 'node:perf_hooks';
import { renderIptables } from '../src/backends/iptables/render.js';
import { serializeFull, serializePartial } from '../src/backends/iptables/serialize.js';
import type { IptablesRenderOptions } from '../src/backends/iptables/model.js';
import { namespacedName } from '../src/core/ids.js';
import type { EndpointSliceObject, ServiceObject } from '../src/core/objects.js';
import { SnapshotBuilder } from '../src/core/snapshot.js';
import { createNetns, isRoot } from '../src/platform/netns.js';

const OPTS: IptablesRenderOptions = {
  nodeName: 'bench-node', nodeIPs: ['198.18.200.1'], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/16'],
  masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: false, family: 'IPv4',
};

function ip(n: number): string {
  return `198.${18 + ((n >>> 16) & 1)}.${(n >>> 8) & 255}.${n & 255}`;
}

function cluster(services: number, endpoints: number): { svcs: ServiceObject[]; slices: EndpointSliceObject[] } {
  const svcs: ServiceObject[] = [];
  const slices: EndpointSliceObject[] = [];
  for (let i = 0; i < services; i++) {
    const name = `svc-${i}`;
    const nodePort = i % 4 === 1 ? 30000 + (i % 2000) : 0;
    const type = nodePort > 0 ? 'NodePort' : 'ClusterIP';
    const clusterIP = ip(40000 + i);
    svcs.push({
      kind: 'Service', id: namespacedName('bench', name), namespace: 'bench', name, labels: {}, annotations: {}, type, clusterIP, clusterIPs: [clusterIP],
      ports: [{ name: 'p', protocol: i % 10 === 3 ? 'UDP' : 'TCP', port: 80, targetPort: 8080, nodePort }],
      externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [], sessionAffinity: i % 7 === 0 ? 'ClientIP' : 'None',
      sessionAffinityTimeoutSeconds: i % 7 === 0 ? 10800 : 0, externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', healthCheckNodePort: 0,
      origin: { source: 'bench' },
    });
    slices.push({
      kind: 'EndpointSlice', id: namespacedName('bench', `${name}-1`), namespace: 'bench', name: `${name}-1`, serviceName: name,
      labels: {}, annotations: {}, addressType: 'IPv4', ports: [{ name: 'p', protocol: i % 10 === 3 ? 'UDP' : 'TCP', port: 8080 }],
      endpoints: Array.from({ length: endpoints }, (_, e) => ({ addresses: [ip((i * endpoints + e) % 39000 + 256)], conditions: { ready: true, serving: true, terminating: false } })),
      origin: { source: 'bench' },
    });
  }
  return { svcs, slices };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function main(): Promise<void> {
  const sizes = (process.env.BENCH_SIZES ?? '1000,10000').split(',').map(Number);
  const runs = Number(process.env.BENCH_RUNS ?? '5');
  const root = isRoot();
  const rows: string[] = [];
  for (const n of sizes) {
    const { svcs, slices } = cluster(n, 10);
    const b = new SnapshotBuilder('bench-node');
    for (const s of svcs) b.handle({ kind: 'Service', type: 'add', object: s });
    for (const s of slices) b.handle({ kind: 'EndpointSlice', type: 'add', object: s });
    const snap = b.next();
    const render: number[] = [];
    const ser: number[] = [];
    let text = '';
    let model = renderIptables(snap, OPTS);
    for (let r = 0; r < runs; r++) {
      let t = performance.now();
      model = renderIptables(snap, OPTS);
      render.push(performance.now() - t);
      t = performance.now();
      text = serializeFull(model);
      ser.push(performance.now() - t);
    }
    // One endpoint changes in one service: partial render + serialize.
    const old = slices[0];
    if (!old) throw new Error('no slices');
    const changed = { ...old, endpoints: old.endpoints.slice(1) };
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: old, object: changed });
    const snap2 = b.next();
    const partial: number[] = [];
    let ptext = '';
    for (let r = 0; r < runs; r++) {
      const t = performance.now();
      const m2 = renderIptables(snap2, OPTS);
      ptext = serializePartial(m2, { changed: snap2.changed, previous: model });
      partial.push(performance.now() - t);
    }
    let restore = NaN;
    let restorePartial = NaN;
    if (root && n <= 10000) {
      const ns = await createNetns('bench-sync');
      try {
        const t = performance.now();
        const r = await ns.exec('iptables-legacy-restore', ['--noflush'], { input: text, timeoutMs: 600_000 });
        restore = r.code === 0 ? performance.now() - t : NaN;
        const t2 = performance.now();
        const r2 = await ns.exec('iptables-legacy-restore', ['--noflush'], { input: ptext, timeoutMs: 600_000 });
        restorePartial = r2.code === 0 ? performance.now() - t2 : NaN;
      } finally {
        await ns.destroy();
      }
    }
    const own = median(render) + median(ser);
    rows.push([
      String(n).padStart(6), `${median(render).toFixed(0)} ms`.padStart(9), `${median(ser).toFixed(0)} ms`.padStart(9),
      `${(text.length / 1e6).toFixed(1)} MB`.padStart(8), `${restore.toFixed(0)} ms`.padStart(10),
      `${((own / (own + restore)) * 100).toFixed(1)}%`.padStart(8), `${median(partial).toFixed(0)} ms`.padStart(9), `${restorePartial.toFixed(0)} ms`.padStart(10),
    ].join(' | '));
  }
  process.stdout.write([
    `iptables mode, services × 10 endpoints; medians of ${runs} runs; restore = iptables-legacy-restore in a fresh namespace (one run)`,
    'services |   render | serialize |    text |   restore | kproxy share | partial (render+ser) | partial restore',
    ...rows, '',
  ].join('\n'));
}

void main();
