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
import { serializeCleanup, serializeDeleteChains, serializeFull, serializePartial, serializeStages, stillStale } from '../../../src/backends/nftables/serialize.js';
import { isServiceChainName } from '../../../src/backends/nftables/names.js';
import { assertGolden } from '../../helpers/golden.js';
import { ep, slice, svc } from '../../helpers/objects.js';
import { OPTS, builder, overall, port, snapshot, type Obj } from './fixture.js';

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

/** Lines that write chain `c` (declare, flush, or add a rule to it). */
const writesChain = (line: string, c: string): boolean =>
  line === `add chain ip kube-proxy ${c}` || line.startsWith(`add chain ip kube-proxy ${c} {`) || line === `flush chain ip kube-proxy ${c}` || line.startsWith(`add rule ip kube-proxy ${c} `);

test('staging: new service ports go ahead in bounded transactions that nothing traffic sees refers to; with the main one they are the full sync', () => {
  const m = renderNftables(snapshot(overall()), OPTS);
  const full = serializeFull(m).text.split('\n').filter((l) => l !== '');
  const { transactions, staged } = serializeStages(m, m.servicePorts.values(), 20);
  assert.ok(transactions.length >= 3, `${transactions.length} stages`);
  assertGolden('nftables/staged-overall.nft', [...transactions.map((t, i) => `# staging transaction ${i + 1} of ${transactions.length}\n${t.text}`), `# main transaction\n${serializeFull(m, { staged }).text}`].join(''));
  assert.deepEqual([...staged.chains].sort(), [...m.servicePorts.values()].flatMap((p) => p.chains).sort(), 'every port\'s chains are staged');
  assert.ok(staged.sets.size > 0 && [...staged.sets].every((s) => s.startsWith('affinity-')));
  const stageLines = transactions.flatMap((t) => t.text.split('\n').filter((l) => l !== ''));
  for (const t of transactions) {
    const lines = t.text.split('\n').filter((l) => l !== '');
    for (const l of lines) {
      assert.doesNotMatch(l, /^(add|delete) element |^flush (map|set) |^delete /, `a stage changes nothing traffic sees: ${l}`);
      assert.doesNotMatch(l, / hook /, `a stage declares no base chain: ${l}`);
      const f = /^flush chain ip kube-proxy (\S+)$/.exec(l);
      if (f?.[1]) assert.ok(staged.chains.has(f[1]), `a stage flushes only its own new chains: ${l}`);
      const r = /^add rule ip kube-proxy (\S+) /.exec(l);
      if (r?.[1]) assert.ok(staged.chains.has(r[1]), `a stage writes rules only into its own new chains: ${l}`);
    }
    // Bounded: the stage's own chains stop at the first port that reaches 20 lines.
    const own = lines.filter((l) => /^(add rule|flush chain) /.test(l)).length;
    assert.ok(own < 20 + 20, `${own} lines of chains in one stage`);
  }
  const main = serializeFull(m, { staged }).text.split('\n').filter((l) => l !== '');
  for (const c of staged.chains) assert.ok(!main.some((l) => writesChain(l, c)), `the main transaction leaves staged chain ${c} alone`);
  for (const s of staged.sets) assert.ok(!main.some((l) => l.startsWith(`add set ip kube-proxy ${s} `)), `and staged set ${s}`);
  assert.ok(main.some((l) => l.startsWith('add element ip kube-proxy service-ips ')), 'the map elements pointing at the staged chains are in the main transaction');
  assert.deepEqual([...new Set([...stageLines, ...main])].sort(), [...new Set(full)].sort(), 'stages and main write exactly what one full transaction writes');
});

test('staging: only the ports given are staged, and nothing below one transaction\'s worth', () => {
  const m = renderNftables(snapshot(overall()), OPTS);
  assert.equal(serializeStages(m, m.servicePorts.values(), 1_000_000).transactions.length, 0);
  assert.equal(serializeStages(m, m.servicePorts.values(), 1_000_000).staged.chains.size, 0);
  const svc1 = m.servicePorts.get(spn('ns1', 'svc1', 'p80'));
  assert.ok(svc1);
  const one = serializeStages(m, [svc1], 1);
  assert.equal(one.transactions.length, 1);
  assert.deepEqual([...one.staged.chains], [...svc1.chains]);
  assert.ok([...one.staged.chains].every(isServiceChainName));
  const text = one.transactions[0]?.text ?? '';
  assert.doesNotMatch(text, /ns2\/svc2/);
  assert.match(text, /^add chain ip kube-proxy mark-for-masquerade/m, 'the shared chains a rule may jump to are declared');
  assert.doesNotMatch(text, /^flush chain ip kube-proxy mark-for-masquerade/m, 'but not flushed');
});

test('staging in a partial sync: the new service\'s chains are left to the stages, its map elements are not', () => {
  const b = builder(world());
  const m1 = renderNftables(b.next(), OPTS);
  b.handle({ kind: 'Service', type: 'add', object: svc('ns3', 'svc3', { clusterIP: '172.30.0.43', ports: [port('p80', 80)] }) });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns3', 'svc3-1', 'svc3', [ep('10.180.0.7')], p80) });
  const s2 = b.next();
  const m2 = renderNftables(s2, OPTS);
  const port3 = m2.servicePorts.get(spn('ns3', 'svc3', 'p80'));
  assert.ok(port3);
  const { transactions, staged } = serializeStages(m2, [port3], 1);
  assert.equal(transactions.length, 1);
  const tx = serializePartial(m2, { previous: m1, changed: s2.changed, staged }).text.split('\n');
  for (const c of port3.chains) assert.ok(!tx.some((l) => writesChain(l, c)), c);
  assert.ok(tx.some((l) => /^add element ip kube-proxy service-ips \{ 172\.30\.0\.43 \. tcp \. 80 .*: goto service-/.test(l)), tx.join('\n'));
});
