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
import { serializeCleanup, serializeDeleteStale, serializeFull, serializePartial, serializeStages, stillStale } from '../../../src/backends/nftables/serialize.js';
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
    // svc2 deleted: its elements deleted one by one, its chains flushed and its affinity set left (stale).
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
  assert.deepEqual(r.tx.stale, ['endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80']);
  assert.match(text, /flush chain ip kube-proxy service-ULMVA6XW-ns1\/svc1\/tcp\/p80\n/);
  assert.doesNotMatch(text, /ns2\/svc2/);
  assert.doesNotMatch(text, /element/);
  // Top-level chains are not rewritten.
  assert.doesNotMatch(text, /chain ip kube-proxy (services|filter-input|masquerading)\b/);
  assert.equal(serializeDeleteStale('ip', r.tx.stale), 'delete chain ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80\n');
});

test('partial with nothing changed is empty (no table add: a deleted table must fail a partial sync)', () => {
  const b = builder(world());
  const m = renderNftables(b.next(), OPTS);
  const tx = serializePartial(m, { previous: m });
  assert.equal(tx.text, '');
  assert.deepEqual(tx.stale, []);
  // `changed` forces a rewrite of that port's chains even if equal.
  const forced = serializePartial(m, { previous: m, changed: [spn('ns1', 'svc1', 'p80')] });
  assert.match(forced.text, /flush chain ip kube-proxy service-ULMVA6XW-ns1\/svc1\/tcp\/p80/);
  assert.doesNotMatch(forced.text, /svc2/);
});

test('partial delete: elements deleted, chains flushed; chains and affinity set stale, deleted later', () => {
  const r = partial(deleteService(SVC2, SVC2_SLICE));
  assert.match(r.tx.text, /delete element ip kube-proxy service-nodeports \{ tcp \. 3002 \}/);
  assert.match(r.tx.text, /delete element ip kube-proxy cluster-ips \{ 172\.30\.0\.42 \}/);
  assert.doesNotMatch(r.tx.text, /delete set|delete chain/, 'nothing is deleted in the change\'s own transaction');
  assert.doesNotMatch(r.tx.text, /add element/);
  const sets = r.tx.stale.filter((n) => n.startsWith('affinity-'));
  assert.equal(sets.length, 1);
  assert.equal(r.tx.stale.length - sets.length, 3);
  for (const c of r.tx.stale.filter((n) => !n.startsWith('affinity-'))) assert.match(r.tx.text, new RegExp(`^flush chain ip kube-proxy ${c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  assert.match(serializeDeleteStale('ip', r.tx.stale), new RegExp(`^delete set ip kube-proxy ${sets[0]?.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
});

test('a partial transaction declares every set its rules name, and writes no line that makes nft load its cache', () => {
  // An endpoint change of a service with affinity: its chains name the affinity sets of all its
  // endpoints, and the fixed chains (rewritten too) name the shared maps.
  const b = builder(world());
  const m1 = renderNftables(b.next(), OPTS);
  b.handle({ kind: 'EndpointSlice', type: 'update', previous: SVC2_SLICE, object: { ...SVC2_SLICE, endpoints: [...SVC2_SLICE.endpoints, ep('10.180.0.77')] } });
  const m2 = renderNftables(b.next(), OPTS);
  const fixed = [...m2.chains.keys()].filter((c) => !isServiceChainName(c));
  const text = serializePartial(m2, { previous: m1, changed: [spn('ns2', 'svc2', 'p80')], rewriteChains: fixed }).text;
  const named = new Set([...text.matchAll(/^\t.*$/gm)].flatMap((r) => [...r[0].matchAll(/@([^\s{}]+)/g)].map((m) => m[1] ?? '')));
  assert.ok([...named].some((n) => n.startsWith('affinity-')) && named.has('service-ips'), [...named].join(' '));
  for (const n of named) assert.match(text, new RegExp(`^add (set|map) ip kube-proxy ${n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\{`, 'm'), `${n} is declared`);
  assert.doesNotMatch(text, /^(add rule|delete|add element) /m);
});

test('full sync flushes unused service chains it is told exist and deletes unused affinity sets', () => {
  const m = renderNftables(builder(world()).next(), OPTS);
  const tx = serializeFull(m, {
    existingChains: ['services', 'service-ULMVA6XW-ns1/svc1/tcp/p80', 'service-OLD00000-ns9/gone/tcp/p80'],
    existingSets: ['cluster-ips', 'affinity-OLD00000-ns9/gone/tcp/p80__10.1.1.1/80'],
  });
  assert.deepEqual(tx.stale, ['service-OLD00000-ns9/gone/tcp/p80']);
  assert.match(tx.text, /flush chain ip kube-proxy service-OLD00000-ns9\/gone\/tcp\/p80\n/);
  assert.match(tx.text, /delete set ip kube-proxy affinity-OLD00000-ns9\/gone\/tcp\/p80__10\.1\.1\.1\/80\n/);
  assert.doesNotMatch(tx.text, /delete set ip kube-proxy cluster-ips/);
});

test('cleanup is idempotent add+delete of the table', () => {
  assert.equal(serializeCleanup('ip'), 'add table ip kube-proxy\ndelete table ip kube-proxy\n');
  assert.equal(serializeCleanup('ip6'), 'add table ip6 kube-proxy\ndelete table ip6 kube-proxy\n');
  assert.equal(serializeDeleteStale('ip', []), '');
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

/** Statements that write chain `c` (declare it, flush it, or write its rules). */
const writesChain = (st: string, c: string): boolean =>
  st === `add chain ip kube-proxy ${c}` || st.startsWith(`add chain ip kube-proxy ${c} {`) || st === `flush chain ip kube-proxy ${c}`;

/** A transaction's statements: its lines, with each `add chain … {` block of rules joined into one. */
function statements(text: string): string[] {
  const out: string[] = [];
  let block: string[] | undefined;
  for (const l of text.split('\n')) {
    if (block) {
      block.push(l);
      if (l === '}') {
        out.push(block.join('\n'));
        block = undefined;
      }
    } else if (l.endsWith(' {')) block = [l];
    else if (l !== '') out.push(l);
  }
  assert.equal(block, undefined, 'every block is closed');
  return out;
}

test('staging: new service ports go ahead in bounded transactions that nothing traffic sees refers to; with the main one they are the full sync', () => {
  const m = renderNftables(snapshot(overall()), OPTS);
  const full = statements(serializeFull(m).text);
  const { transactions, staged } = serializeStages(m, m.servicePorts.values(), 20);
  assert.ok(transactions.length >= 3, `${transactions.length} stages`);
  assertGolden('nftables/staged-overall.nft', [...transactions.map((t, i) => `# staging transaction ${i + 1} of ${transactions.length}\n${t.text}`), `# main transaction\n${serializeFull(m, { staged }).text}`].join(''));
  assert.deepEqual([...staged.chains].sort(), [...m.servicePorts.values()].flatMap((p) => p.chains).sort(), 'every port\'s chains are staged');
  assert.ok(staged.sets.size > 0 && [...staged.sets].every((s) => s.startsWith('affinity-')));
  assert.match(transactions[0]?.text ?? '', /^add table ip kube-proxy \{ comment /, 'the first stage may create the table, with its comment');
  for (const t of transactions.slice(1)) assert.match(t.text, /^add table ip kube-proxy\n/, 'the others declare it bare (no cache load)');
  const stageLines = transactions.flatMap((t) => statements(t.text)).filter((l) => l !== 'add table ip kube-proxy');
  for (const t of transactions) {
    const lines = statements(t.text);
    for (const l of lines) {
      assert.doesNotMatch(l, /^(add|delete) element |^flush (map|set) |^delete /, `a stage changes nothing traffic sees: ${l}`);
      assert.doesNotMatch(l, / hook /, `a stage declares no base chain: ${l}`);
      const f = /^flush chain ip kube-proxy (\S+)$/.exec(l);
      if (f?.[1]) assert.ok(staged.chains.has(f[1]), `a stage flushes only its own new chains: ${l}`);
      const r = /^add chain ip kube-proxy (\S+) \{\n/.exec(l);
      if (r?.[1]) assert.ok(staged.chains.has(r[1]), `a stage writes rules only into its own new chains: ${l}`);
    }
    // Bounded: the stage's own chains stop at the first port that reaches 20 lines.
    const own = t.text.split('\n').filter((l) => /^(\t|flush chain )/.test(l)).length;
    assert.ok(own < 20 + 20, `${own} lines of chains in one stage`);
  }
  const main = statements(serializeFull(m, { staged }).text);
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
