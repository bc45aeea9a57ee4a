/**
 * The kernel modes' incremental renderers (IptablesRenderer, NftablesRenderer): after any
 * sequence of changes their model is exactly a fresh full render of the same snapshot, and they
 * re-render only the service ports that changed. Random change sequences from a fixed seed over
 * the bench generator's cluster plus upstream's test world (local policies, external IPs, ...).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IptablesRenderer, renderIptables } from '../../src/backends/iptables/render.js';
import { serializeFull as iptablesFull, serializePartial as iptablesPartial } from '../../src/backends/iptables/serialize.js';
import type { RenderedIptablesModel } from '../../src/backends/iptables/model.js';
import { parseIptablesSave, type Ruleset } from '../../src/netfilter/iptables-save.js';
import { NftablesRenderer, renderNftables } from '../../src/backends/nftables/render.js';
import { serializePartial as nftPartial } from '../../src/backends/nftables/serialize.js';
import { PortIndexed } from '../../src/backends/nftables/port-indexed.js';
import { SortedPorts } from '../../src/backends/port-cache.js';
import type { ServicePortName } from '../../src/core/ids.js';
import type { EndpointSliceObject, NodeObject, ServiceObject } from '../../src/core/objects.js';
import { ep, node, slice, svc } from '../helpers/objects.js';
import { SnapshotBuilder, type Snapshot } from '../../src/core/snapshot.js';
import { generateCluster, sliceWithEndpoints, toSourceEvents, type Raw } from '../../bench/cluster-gen.js';
import { addEvent, BASE_OPTS, NODE, overall, port } from '../helpers/upstream-world.js';
import { rng } from '../helpers/rng.js';

const IPT_OPTS = { ...BASE_OPTS, localhostNodePorts: false };

interface Renderer<M> {
  render(snap: Snapshot): M;
  readonly lastRendered: number;
}

const MODES = [
  { name: 'iptables', make: (): Renderer<unknown> => new IptablesRenderer(IPT_OPTS), fresh: (s: Snapshot): unknown => renderIptables(s, IPT_OPTS) },
  { name: 'nftables', make: (): Renderer<unknown> => new NftablesRenderer(BASE_OPTS), fresh: (s: Snapshot): unknown => renderNftables(s, BASE_OPTS) },
] as const;

function one(raw: Raw, kind: 'Service' | 'EndpointSlice'): ServiceObject | EndpointSliceObject {
  const [ev] = toSourceEvents([raw]);
  if (ev === undefined || ev.kind !== kind || ev.type !== 'add') throw new Error(`expected one ${kind}`);
  return ev.object;
}

/** A world the random steps mutate: generator services (by index) present or not. */
class World {
  readonly b = new SnapshotBuilder(NODE);
  readonly services: (ServiceObject | undefined)[] = [];
  readonly slices: (EndpointSliceObject | undefined)[] = [];

  constructor(readonly raw: { services: Raw[]; slices: Raw[] }) {
    for (const o of overall()) this.b.handle(addEvent(o));
    raw.services.forEach((s, i) => this.setService(i, s));
    raw.slices.forEach((s, i) => this.setSlice(i, s));
  }

  setService(i: number, raw: Raw | undefined): void {
    const prev = this.services[i];
    const cur = raw === undefined ? undefined : (one(raw, 'Service') as ServiceObject);
    if (prev && cur) this.b.handle({ kind: 'Service', type: 'update', previous: prev, object: cur });
    else if (cur) this.b.handle({ kind: 'Service', type: 'add', object: cur });
    else if (prev) this.b.handle({ kind: 'Service', type: 'delete', object: prev });
    this.services[i] = cur;
  }

  setSlice(i: number, raw: Raw | undefined): void {
    const prev = this.slices[i];
    const cur = raw === undefined ? undefined : (one(raw, 'EndpointSlice') as EndpointSliceObject);
    if (prev && cur) this.b.handle({ kind: 'EndpointSlice', type: 'update', previous: prev, object: cur });
    else if (cur) this.b.handle({ kind: 'EndpointSlice', type: 'add', object: cur });
    else if (prev) this.b.handle({ kind: 'EndpointSlice', type: 'delete', object: prev });
    this.slices[i] = cur;
  }
}

function withSpec(svc: Raw, patch: Raw): Raw {
  const spec: Raw = { ...(svc.spec as Raw), ...patch };
  if (spec.sessionAffinity === 'None') delete spec.sessionAffinityConfig;
  return { ...svc, spec };
}

/** One random change to 1-3 generator services; returns the indexes touched. */
function step(w: World, r: (n: number) => number): Set<number> {
  const touched = new Set<number>();
  const n = w.raw.services.length;
  for (let k = 1 + r(3); k > 0; k--) {
    const i = r(n);
    touched.add(i);
    const svc = w.raw.services[i] ?? {};
    const slice = w.raw.slices[i] ?? {};
    switch (r(8)) {
      case 0: // endpoints replaced: 0..5 pods
        w.setSlice(i, sliceWithEndpoints(slice, r(6), r(60000), NODE));
        break;
      case 1: // many endpoints: pushes the cluster over or under large-cluster mode (1000)
        w.setSlice(i, sliceWithEndpoints(slice, r(2) === 0 ? 600 : 1, r(60000), NODE));
        break;
      case 2:
        w.setSlice(i, undefined);
        break;
      case 3:
        w.setSlice(i, slice);
        break;
      case 4:
        w.setService(i, undefined);
        break;
      case 5:
        w.setService(i, svc);
        break;
      case 6: // affinity toggled
        w.setService(i, withSpec(svc, r(2) === 0 ? { sessionAffinity: 'None' } : { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 + r(100) } } }));
        break;
      default: // a local policy, or a different port
        w.setService(i, withSpec(svc, r(2) === 0 && (svc.spec as Raw).type !== 'ClusterIP' ? { externalTrafficPolicy: 'Local' } : { internalTrafficPolicy: 'Local' }));
    }
  }
  return touched;
}

type NftModel = ReturnType<typeof renderNftables>;

/**
 * A partial sync between two rendered models compares only the chains and sets of the service
 * ports whose objects changed (scopeOf); against Map copies of the same models it compares every
 * one. Both must write the same transaction and leave the same stale names.
 */
function samePartialAsEveryChainCompared(model: NftModel, previous: NftModel, snap: Snapshot, where: string): void {
  assert.ok(model.chains instanceof PortIndexed && previous.chains instanceof PortIndexed, `${where}: the renderer gives views`);
  const maps = (m: NftModel): NftModel => ({ ...m, chains: new Map(m.chains), sets: new Map(m.sets) });
  const rewriteChains = new NftablesRenderer(BASE_OPTS).fixedChains;
  for (const changed of [snap.changed, new Set<ServicePortName>()]) {
    const scoped = nftPartial(model, { changed, previous, rewriteChains });
    const every = nftPartial(maps(model), { changed, previous: maps(previous), rewriteChains });
    assert.equal(scoped.text, every.text, `${where}: partial text (${changed.size} changed)`);
    assert.deepEqual(scoped.stale, every.stale, `${where}: stale names`);
  }
}

/** A ruleset as per table, chain name → its rules' text, in name order (restores add new chains last). */
function normalized(rs: Ruleset): string[] {
  const out: string[] = [];
  for (const t of [...rs.tables.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    for (const c of [...t.chains.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      out.push(`${t.name} ${c.name}: ${c.rules.map((r) => r.args.join(' ')).join(' | ')}`);
    }
  }
  return out;
}

/**
 * iptables partial syncs walk only the service ports whose chain lists changed (forEachChangedPort)
 * and read their chains from the render's pieces. What counts is what the kernel ends up with:
 * the partial restore applied on top of what the previous syncs left must hold exactly the
 * chains and rules a full restore of the model gives, no chain left over, none missing.
 */
function partialLeavesWhatFullWrites(kernel: Ruleset, model: RenderedIptablesModel, previous: RenderedIptablesModel, snap: Snapshot, where: string): Ruleset {
  const after = parseIptablesSave(iptablesPartial(model, { changed: snap.changed, previous }).text, kernel);
  assert.deepEqual(normalized(after), normalized(parseIptablesSave(iptablesFull(model).text)), `${where}: partial restore on top of the last one`);
  return after;
}

for (const mode of MODES) {
  for (const seed of [1, 2, 3]) {
    test(`${mode.name}: after 40 random change steps (seed ${seed}) the incremental model equals a fresh full render at every step`, () => {
      const cluster = generateCluster({ services: 40, endpointsPerService: 3, nodeName: NODE });
      const w = new World({ services: [...cluster.services], slices: [...cluster.slices] });
      const r = rng(seed);
      const renderer = mode.make();
      let snap = w.b.next();
      assert.deepStrictEqual(renderer.render(snap), mode.fresh(snap));
      let flips = 0;
      let prevLarge: unknown;
      let previous = renderer.render(snap);
      let kernel = mode.name === 'iptables' ? parseIptablesSave(iptablesFull(previous as RenderedIptablesModel).text) : undefined;
      for (let s = 0; s < 40; s++) {
        const touched = step(w, r);
        snap = w.b.next();
        const model = renderer.render(snap);
        assert.deepStrictEqual(model, mode.fresh(snap), `step ${s}`);
        if (mode.name === 'nftables') samePartialAsEveryChainCompared(model as NftModel, previous as NftModel, snap, `step ${s}`);
        if (kernel !== undefined) kernel = partialLeavesWhatFullWrites(kernel, model as RenderedIptablesModel, previous as RenderedIptablesModel, snap, `step ${s}`);
        previous = model;
        const large = (model as { largeClusterMode?: boolean }).largeClusterMode;
        if (large !== prevLarge && s > 0) flips++;
        else assert.ok(renderer.lastRendered <= touched.size, `step ${s}: re-rendered ${renderer.lastRendered} ports for ${touched.size} changed services`);
        prevLarge = large;
      }
      // The sequences are long enough to cross large-cluster mode (iptables) at least once.
      if (mode.name === 'iptables') assert.ok(flips > 0, 'no large-cluster flip exercised');
    });
  }

  test(`${mode.name}: a one-endpoint change re-renders one service port, and the partial sync writes only its chains`, () => {
    const cluster = generateCluster({ services: 200, endpointsPerService: 10, nodeName: NODE });
    const b = new SnapshotBuilder(NODE);
    const events = toSourceEvents([...cluster.services, ...cluster.slices]);
    for (const e of events) b.handle(e);
    const renderer = mode.make();
    const before = renderer.render(b.next());
    assert.equal(renderer.lastRendered, 200);
    const old = events.find((e) => e.kind === 'EndpointSlice' && e.object.name === 'svc-7-1');
    assert.ok(old && old.kind === 'EndpointSlice' && old.type === 'add');
    b.handle({ kind: 'EndpointSlice', type: 'update', previous: old.object, object: { ...old.object, endpoints: old.object.endpoints.slice(1) } });
    const snap = b.next();
    const after = renderer.render(snap);
    assert.equal(renderer.lastRendered, 1);
    assert.deepStrictEqual(after, mode.fresh(snap));
    // The same ports: the very same names array, so the partial sync's walk compares no names.
    const portsOf = (m: unknown): SortedPorts<unknown> => (mode.name === 'iptables' ? (m as ReturnType<typeof renderIptables>).serviceChains : (m as ReturnType<typeof renderNftables>).servicePorts) as SortedPorts<unknown>;
    assert.ok(portsOf(after) instanceof SortedPorts);
    assert.equal(portsOf(after).names, portsOf(before).names);
    const text = mode.name === 'iptables'
      ? iptablesPartial(after as ReturnType<typeof renderIptables>, { changed: snap.changed, previous: before as ReturnType<typeof renderIptables> }).text
      : nftPartial(after as ReturnType<typeof renderNftables>, { changed: snap.changed, previous: before as ReturnType<typeof renderNftables> }).text;
    // Only svc-7's chains are declared or flushed: its 9 remaining endpoint chains and its service chain (and the removed endpoint's).
    const declared = mode.name === 'iptables'
      ? [...text.matchAll(/^:(KUBE-(?:SVC|SEP|EXT|FW|SVL)-\S+)/gm)].map((m) => m[1])
      : [...text.matchAll(/^flush chain ip kube-proxy (\S+)/gm)].map((m) => m[1]);
    assert.ok(declared.length >= 10 && declared.length <= 12, `declared ${declared.length}: ${declared.join(' ')}`);
    for (const c of declared) assert.match(c ?? '', mode.name === 'iptables' ? /^KUBE-(SVC|SEP|EXT|FW|SVL)-/ : /\/svc-7\//);
  });
}

test('a change of this node\'s zone re-renders ports whose objects did not change (topology hints)', () => {
  const zoneOf = (z: string): NodeObject => node(NODE, { labels: { 'topology.kubernetes.io/zone': z } });
  const objects = [
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }),
    slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1', { zoneHints: ['zone-a'] }), ep('10.180.0.2', { zoneHints: ['zone-b'] })], { portName: 'p80', port: 80 }),
  ];
  for (const { name, make, fresh } of MODES) {
    const b = new SnapshotBuilder(NODE);
    for (const o of [zoneOf('zone-a'), ...objects]) b.handle(addEvent(o));
    const r = make();
    const inA = r.render(b.next());
    b.handle({ kind: 'Node', type: 'update', previous: zoneOf('zone-a'), object: zoneOf('zone-b') });
    const s = b.next();
    const inB = r.render(s);
    assert.deepEqual(inB, fresh(s), `${name}: the incremental render after the zone change equals a fresh one`);
    assert.notDeepEqual(inB, inA, `${name}: the zone change moved Cluster traffic to the other endpoint`);
  }
});
