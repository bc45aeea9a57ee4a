/**
 * nftables transactions: full, partial (element diff, only changed chains rewritten, stale
 * chains flushed and handed back), chain deletion and cleanup. Partial goldens come with a
 * `.base.nft` golden: the full sync that is installed before it (nft-check applies both).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namespacedName, servicePortName } from '../../../src/core/ids.js';
import type { EndpointSliceObject, ServiceObject } from '../../../src/core/objects.js';
import type { SnapshotBuilder } from '../../../src/core/snapshot.js';
import { renderNftables } from '../../../src/backends/nftables/render.js';
import { serializeCleanup, serializeDeleteChains, serializeFull, serializePartial, stillStale } from '../../../src/backends/nftables/serialize.js';
import { assertGolden } from '../../helpers/golden.js';
import { ep, slice, svc } from '../../helpers/objects.js';
import { OPTS, builder, port, type Obj } from './fixture.js';

const p80 = { portName: 'p80', port: 80 } as const;
const spn = (ns: string, name: string, p: string) => servicePortName(namespacedName(ns, name), p);

function world(): Obj[] {
  return [svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] }), OLD_SVC1_SLICE, SVC2, SVC2_SLICE];
}

/** Full sync of world(), then the changes `change` feeds the builder, as a partial sync. */
function partial(change: (b: SnapshotBuilder) => void) {
  const b = builder(world());
  const m1 = renderNftables(b.next(), OPTS);
  change(b);
  const s2 = b.next();
  const m2 = renderNftables(s2, OPTS);
  return { base: serializeFull(m1).text, m1, m2, s2, tx: serializePartial(m2, { previous: m1, changed: s2.changed }) };
}

function updateSlice(previous: EndpointSliceObject, object: EndpointSliceObject): (b: SnapshotBuilder) => void {
  return (b) => void b.handle({ kind: 'EndpointSlice', type: 'update', previous, object });
}

function deleteService(s: ServiceObject, sl: EndpointSliceObject): (b: SnapshotBuilder) => void {
  return (b) => {
    b.handle({ kind: 'Service', type: 'delete', object: s });
    b.handle({ kind: 'EndpointSlice', type: 'delete', object: sl });
  };
}

const svc1Slice = (eps: ReturnType<typeof ep>[]) => slice('ns1', 'svc1-1', 'svc1', eps, p80);
const OLD_SVC1_SLICE = svc1Slice([ep('10.180.0.1'), ep('10.180.0.2')]);
const SVC2 = svc('ns2', 'svc2', { type: 'NodePort', clusterIP: '172.30.0.42', ports: [port('p80', 80, 'TCP', 3002)], sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 300 });
const SVC2_SLICE = slice('ns2', 'svc2-1', 'svc2', [ep('10.180.0.3')], p80);

export const PARTIAL_CASES: readonly { readonly name: string; readonly run: () => { base: string; text: string } }[] = [
  {
    // One endpoint of svc1 replaced: svc1's service chain rewritten, the new endpoint chain
    // added, the old one flushed as stale; no map element changes; svc2 untouched.
    name: 'partial-endpoint-change',
    run: () => {
      const r = partial(updateSlice(OLD_SVC1_SLICE, svc1Slice([ep('10.180.0.1'), ep('10.180.0.9')])));
      return { base: r.base, text: r.tx.text };
    },
  },
  {
    // svc2 deleted: its elements deleted one by one, its chains flushed (stale), its affinity set deleted.
    name: 'partial-delete',
    run: () => {
      const r = partial(deleteService(SVC2, SVC2_SLICE));
      return { base: r.base, text: r.tx.text };
    },
  },
  {
    // svc2's affinity timeout changes: its affinity set is deleted and re-added after the
    // chains that use it are flushed, and those chains are rewritten.
    name: 'partial-affinity-timeout',
    run: () => {
      const r = partial((b) => void b.handle({ kind: 'Service', type: 'update', previous: SVC2, object: { ...SVC2, sessionAffinityTimeoutSeconds: 600 } }));
      return { base: r.base, text: r.tx.text };
    },
  },
  {
    // svc1 loses all endpoints: service-ips element replaced by a reject element.
    name: 'partial-no-endpoints',
    run: () => {
      const r = partial(updateSlice(OLD_SVC1_SLICE, svc1Slice([ep('10.180.0.1', { ready: false })])));
      return { base: r.base, text: r.tx.text };
    },
  },
];

for (const c of PARTIAL_CASES) {
  test(`golden: ${c.name}`, () => {
    const r = c.run();
    assertGolden(`nftables/${c.name}.base.nft`, r.base);
    assertGolden(`nftables/${c.name}.nft`, r.text);
  });
}

test('partial endpoint change: only svc1 chains rewritten, stale endpoint chain returned', () => {
  const r = partial(updateSlice(OLD_SVC1_SLICE, svc1Slice([ep('10.180.0.1'), ep('10.180.0.9')])));
  const text = r.tx.text;
  assert.deepEqual(r.tx.staleChains, ['endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80']);
  assert.match(text, /flush chain ip kube-proxy service-ULMVA6XW-ns1\/svc1\/tcp\/p80\n/);
  assert.doesNotMatch(text, /ns2\/svc2/);
  assert.doesNotMatch(text, /element/);
  // Top-level chains are not rewritten.
  assert.doesNotMatch(text, /chain ip kube-proxy (services|filter-input|masquerading)\b/);
  assert.equal(serializeDeleteChains('ip', r.tx.staleChains), 'delete chain ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80\n');
});

test('partial with nothing changed is just the table add', () => {
  const b = builder(world());
  const m = renderNftables(b.next(), OPTS);
  const tx = serializePartial(m, { previous: m });
  assert.equal(tx.text, 'add table ip kube-proxy { comment "rules for kube-proxy" ; }\n');
  assert.deepEqual(tx.staleChains, []);
  // `changed` forces a rewrite of that port's chains even if equal.
  const forced = serializePartial(m, { previous: m, changed: [spn('ns1', 'svc1', 'p80')] });
  assert.match(forced.text, /flush chain ip kube-proxy service-ULMVA6XW-ns1\/svc1\/tcp\/p80/);
  assert.doesNotMatch(forced.text, /svc2/);
});

test('partial delete: elements deleted, affinity set deleted, chains stale', () => {
  const r = partial(deleteService(SVC2, SVC2_SLICE));
  assert.match(r.tx.text, /delete element ip kube-proxy service-nodeports \{ tcp \. 3002 \}/);
  assert.match(r.tx.text, /delete element ip kube-proxy cluster-ips \{ 172\.30\.0\.42 \}/);
  assert.match(r.tx.text, /delete set ip kube-proxy affinity-/);
  assert.equal(r.tx.staleChains.length, 3);
  assert.doesNotMatch(r.tx.text, /add element/);
});

test('full sync flushes unused service chains it is told exist and deletes unused affinity sets', () => {
  const m = renderNftables(builder(world()).next(), OPTS);
  const tx = serializeFull(m, {
    existingChains: ['services', 'service-ULMVA6XW-ns1/svc1/tcp/p80', 'service-OLD00000-ns9/gone/tcp/p80'],
    existingSets: ['cluster-ips', 'affinity-OLD00000-ns9/gone/tcp/p80__10.1.1.1/80'],
  });
  assert.deepEqual(tx.staleChains, ['service-OLD00000-ns9/gone/tcp/p80']);
  assert.match(tx.text, /flush chain ip kube-proxy service-OLD00000-ns9\/gone\/tcp\/p80\n/);
  assert.match(tx.text, /delete set ip kube-proxy affinity-OLD00000-ns9\/gone\/tcp\/p80__10\.1\.1\.1\/80\n/);
  assert.doesNotMatch(tx.text, /delete set ip kube-proxy cluster-ips/);
});

test('cleanup is idempotent add+delete of the table', () => {
  assert.equal(serializeCleanup('ip'), 'add table ip kube-proxy\ndelete table ip kube-proxy\n');
  assert.equal(serializeCleanup('ip6'), 'add table ip6 kube-proxy\ndelete table ip6 kube-proxy\n');
  assert.equal(serializeDeleteChains('ip', []), '');
});

test('partial refuses a model of another family', () => {
  const m = renderNftables(builder(world()).next(), OPTS);
  const m6 = renderNftables(builder([]).next(), { ...OPTS, family: 'IPv6' });
  assert.throws(() => serializePartial(m6, { previous: m }), /partial sync/);
});

test('stillStale drops chains the new model uses again', () => {
  const m = renderNftables(builder(world()).next(), OPTS);
  assert.deepEqual(stillStale(m, ['service-ULMVA6XW-ns1/svc1/tcp/p80', 'service-GONE0000-ns9/x/tcp/p', 'service-GONE0000-ns9/x/tcp/p']), ['service-GONE0000-ns9/x/tcp/p']);
});
