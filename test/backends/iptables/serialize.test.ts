/**
 * Full and partial iptables-restore input. Partial syncs follow upstream: top-level chains
 * always, per-service chains only for changed service ports, stale per-service chains
 * declared (flushed) and then deleted with -X.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namespacedName, servicePortName, type ServicePortName } from '../../../src/core/ids.js';
import { SnapshotBuilder } from '../../../src/core/snapshot.js';
import type { RenderedIptablesModel as IptablesModel } from '../../../src/backends/iptables/model.js';
import { renderIptables } from '../../../src/backends/iptables/render.js';
import { changedPorts, serializeFull, serializePartial, serializeStages } from '../../../src/backends/iptables/serialize.js';
import { emptyRuleset, parseIptablesSave } from '../../../src/netfilter/iptables-save.js';
import { assertGolden } from '../../helpers/golden.js';
import { ep, slice, svc } from '../../helpers/objects.js';
import { OPTS, UPSTREAM_FAKE_OPTS, overall, port, snapshot } from './fixture.js';

const SVC1 = svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [port('p80', 80)] });
const SVC2 = svc('ns2', 'svc2', { clusterIP: '172.30.0.42', ports: [port('p8080', 8080)] });
const EPS1 = slice('ns1', 'svc1-1', 'svc1', [ep('10.0.1.1')], { portName: 'p80', port: 80 });
const EPS2 = slice('ns2', 'svc2-1', 'svc2', [ep('10.0.2.1')], { portName: 'p8080', port: 8080 });

function start(): { b: SnapshotBuilder; model: IptablesModel } {
  const b = new SnapshotBuilder('test-node');
  for (const object of [SVC1, SVC2]) b.handle({ kind: 'Service', type: 'add', object });
  for (const object of [EPS1, EPS2]) b.handle({ kind: 'EndpointSlice', type: 'add', object });
  return { b, model: renderIptables(b.next(), OPTS) };
}

/** Per table: the chains declared, the chains ruled, and the -X lines. */
function shape(text: string): Map<string, { declared: string[]; ruled: Set<string>; deleted: string[] }> {
  const out = new Map<string, { declared: string[]; ruled: Set<string>; deleted: string[] }>();
  let cur: { declared: string[]; ruled: Set<string>; deleted: string[] } | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) out.set(line.slice(1), (cur = { declared: [], ruled: new Set(), deleted: [] }));
    else if (line.startsWith(':')) cur?.declared.push(line.slice(1).split(' ')[0] ?? '');
    else if (line.startsWith('-A ')) cur?.ruled.add(line.split(' ')[1] ?? '');
    else if (line.startsWith('-X ')) cur?.deleted.push(line.slice(3));
  }
  return out;
}

test('partial: one endpoint changes, only that service port\'s chains are rewritten and its old SEP deleted', () => {
  const { b, model: before } = start();
  const moved = slice('ns1', 'svc1-1', 'svc1', [ep('10.0.1.2')], { portName: 'p80', port: 80 });
  b.handle({ kind: 'EndpointSlice', type: 'update', previous: EPS1, object: moved });
  const snap = b.next();
  assert.deepEqual([...snap.changed], ['ns1/svc1:p80']);
  const after = renderIptables(snap, OPTS);
  const text = serializePartial(after, { changed: snap.changed, previous: before }).text;
  assertGolden('iptables/partial-endpoint-change.txt', text);

  const nat = shape(text).get('nat');
  assert.ok(nat);
  const oldSep = before.serviceChains.get(servicePortName(namespacedName('ns1', 'svc1'), 'p80'))?.nat.find((c) => c.startsWith('KUBE-SEP-'));
  const newSep = after.serviceChains.get(servicePortName(namespacedName('ns1', 'svc1'), 'p80'))?.nat.find((c) => c.startsWith('KUBE-SEP-'));
  assert.ok(oldSep && newSep && oldSep !== newSep);
  // The top-level chains' rules are the same as before (svc1 still has endpoints): not written.
  assert.deepEqual(nat.declared, ['KUBE-SVC-XPGD46QRK7WJZT7O', newSep, oldSep]);
  assert.deepEqual(nat.deleted, [oldSep]);
  // svc2's chains are neither declared (which would flush them) nor written.
  assert.ok(!text.includes(':KUBE-SVC-2VJB64SDSIJUP5T6'));
  assert.ok(!text.includes('-A KUBE-SVC-2VJB64SDSIJUP5T6'));
  assert.equal(shape(text).get('filter'), undefined, 'nothing changed in filter');
});

test('partial: a deleted service\'s chains are flushed and deleted; one losing its endpoints gets a REJECT', () => {
  const { b, model: before } = start();
  b.handle({ kind: 'Service', type: 'delete', object: SVC2 });
  b.handle({ kind: 'EndpointSlice', type: 'delete', object: EPS1 });
  const snap = b.next();
  const after = renderIptables(snap, OPTS);
  const text = serializePartial(after, { changed: snap.changed, previous: before }).text;
  assertGolden('iptables/partial-delete.txt', text);
  const nat = shape(text).get('nat');
  assert.deepEqual(nat?.deleted.sort(), [...(before.serviceChains.get(servicePortName(namespacedName('ns1', 'svc1'), 'p80'))?.nat ?? []), ...(before.serviceChains.get(servicePortName(namespacedName('ns2', 'svc2'), 'p8080'))?.nat ?? [])].sort());
  assert.match(text, /-A KUBE-SERVICES -m comment --comment "ns1\/svc1:p80 has no endpoints" .* -j REJECT/);
});

test('partial: top-level chains are written only when their rules changed; nothing changed → nothing at all', () => {
  const { b, model } = start();
  const none = serializePartial(model, { changed: new Set(), previous: model });
  assert.equal(none.text, '');
  assert.equal(none.empty, true);
  // A new service: its KUBE-SERVICES rule changes nat's KUBE-SERVICES (and only that top-level chain).
  b.handle({ kind: 'Service', type: 'add', object: svc('ns3', 'svc3', { clusterIP: '172.30.0.43', ports: [port('p80', 80)] }) });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns3', 'svc3-1', 'svc3', [ep('10.0.3.1')], { portName: 'p80', port: 80 }) });
  const snap = b.next();
  const after = renderIptables(snap, OPTS);
  const text = serializePartial(after, { changed: snap.changed, previous: model });
  assert.equal(text.empty, false);
  assert.deepEqual(shape(text.text).get('nat')?.declared.filter((c) => !/^KUBE-(SVC|SEP)-/.test(c)), ['KUBE-SERVICES']);
  assert.equal(shape(text.text).get('filter'), undefined, 'filter: nothing changed there, so no section (the legacy tool would rewrite it)');
  // Against a previous model whose masquerade mark differed, the chains holding the mark are rewritten too.
  const other = new SnapshotBuilder('test-node');
  for (const object of [SVC1, SVC2]) other.handle({ kind: 'Service', type: 'add', object });
  for (const object of [EPS1, EPS2]) other.handle({ kind: 'EndpointSlice', type: 'add', object });
  const marked = renderIptables(other.next(), { ...OPTS, masqueradeBit: 15 });
  const again = shape(serializePartial(after, { changed: snap.changed, previous: marked }).text);
  assert.deepEqual(again.get('nat')?.declared.filter((c) => !/^KUBE-(SVC|SEP)-/.test(c)), ['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ']);
  assert.deepEqual(again.get('filter')?.declared, ['KUBE-FORWARD']);
});

test('partial: ports are rewritten when their chains or rules changed, whatever the change set says, or when large-cluster mode flipped', () => {
  const { b, model: before } = start();
  const same = renderIptables(b.next(true), OPTS);
  assert.deepEqual(changedPorts(same, { changed: new Set(['ns1/svc1:p80' as ServicePortName]), previous: before }).rewrite, [], 'rendered again to the same rules: nothing to write');
  const after = renderIptables(b.next(true), { ...OPTS, masqueradeAll: true });
  assert.equal(changedPorts(after, { changed: new Set(), previous: before }).rewrite.length, 2, 'rules that differ are written');
  const big = { ...after, largeClusterMode: true };
  assert.equal(changedPorts(big, { changed: new Set(), previous: before }).rewrite.length, 2, "large-cluster mode flip rewrites all");
  // An endpoint change the caller forgot: the new SEP name gives it away.
  b.handle({ kind: 'EndpointSlice', type: 'update', previous: EPS2, object: slice('ns2', 'svc2-1', 'svc2', [ep('10.0.2.9')], { portName: 'p8080', port: 8080 }) });
  const moved = renderIptables(b.next(), OPTS);
  assert.deepEqual(changedPorts(moved, { changed: new Set(), previous: before }).rewrite, ['ns2/svc2:p8080']);
});

test('partial output references only chains that exist after the restore', () => {
  const { b, model: before } = start();
  b.handle({ kind: 'Service', type: 'add', object: svc('ns3', 'svc3', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [port('p80', 80, 'TCP', 30003)] }) });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns3', 'svc3-1', 'svc3', [ep('10.0.3.1'), ep('10.0.3.2')], { portName: 'p80', port: 80 }) });
  const snap = b.next();
  const after = renderIptables(snap, OPTS);
  const text = serializePartial(after, { changed: snap.changed, previous: before }).text;
  const present = new Set([...before.nat.chains.keys(), ...shape(text).get('nat')?.declared ?? []]);
  for (const m of text.matchAll(/-j (KUBE-[A-Z0-9-]+)/g)) assert.ok(present.has(m[1] ?? ''), `${m[1]} jumped to but not present`);
  for (const m of text.matchAll(/^-A (\S+)/gm)) assert.ok(shape(text).get('nat')?.declared.includes(m[1] ?? '') || shape(text).get('filter')?.declared.includes(m[1] ?? ''), `${m[1]} written but not declared`);
});

test('full: stale chains are declared then deleted; chains the model has are never deleted', () => {
  const { model } = start();
  const text = serializeFull(model, { stale: new Map([['nat', ['KUBE-SEP-OLDOLDOLDOLDOLD1', 'KUBE-SVC-XPGD46QRK7WJZT7O']]]) }).text;
  assert.match(text, /:KUBE-SEP-OLDOLDOLDOLDOLD1 - \[0:0\]\n-A KUBE-SERVICES/);
  assert.match(text, /-X KUBE-SEP-OLDOLDOLDOLDOLD1\nCOMMIT\n$/);
  assert.doesNotMatch(text, /-X KUBE-SVC-XPGD46QRK7WJZT7O/);
  assert.ok(text.startsWith('*filter\n'));
  assert.equal(text.match(/^COMMIT$/gm)?.length, 2);
});

test('a service port\'s own chains jump only to each other and to KUBE-MARK-MASQ: what lets a staging restore stand alone', () => {
  for (const opts of [OPTS, UPSTREAM_FAKE_OPTS]) {
    const model = renderIptables(snapshot(overall()), opts);
    let jumps = 0;
    for (const spn of model.serviceChains.keys()) {
      const own = model.nat.chains.own(spn);
      const mine = new Set(own?.ownChains);
      for (const rule of (own?.ownRules ?? []).flat()) {
        const target = /-j (KUBE-\S+)/.exec(rule)?.[1];
        if (target === undefined) continue;
        jumps++;
        assert.ok(mine.has(target) || target === 'KUBE-MARK-MASQ', `${spn}: ${rule}`);
      }
    }
    assert.ok(jumps > 20, `the world has jumps to check (${jumps})`);
  }
});

test('stages: whole ports in model order, at most maxChains each unless one port has more, KUBE-MARK-MASQ in the first', () => {
  const model = renderIptables(snapshot(overall()), OPTS);
  const ports = model.serviceChains.names;
  const sizes = ports.map((spn) => model.nat.chains.own(spn)?.ownChains.length ?? 0);
  const biggest = Math.max(...sizes);
  assert.ok(biggest >= 3);
  const stages = serializeStages(model, ports, biggest - 1).map((s) => s.text);
  const declared = stages.map((t) => [...t.matchAll(/^:(\S+)/gm)].map((m) => m[1] ?? ''));
  assert.deepEqual(declared.flat().filter((c) => c !== 'KUBE-MARK-MASQ'), ports.flatMap((spn) => model.nat.chains.own(spn)?.ownChains ?? []), 'every chain once, in model order');
  assert.deepEqual(declared.map((d) => d.includes('KUBE-MARK-MASQ')), declared.map((_, i) => i === 0));
  const portChains = ports.map((spn) => (model.nat.chains.own(spn)?.ownChains ?? []).join(' '));
  for (const d of declared) {
    const own = d.filter((c) => c !== 'KUBE-MARK-MASQ');
    assert.ok(own.length <= biggest - 1 || portChains.includes(own.join(' ')), `a stage over the limit holds one port only: ${own.join(' ')}`);
  }
  assert.ok(declared.some((d) => d.filter((c) => c !== 'KUBE-MARK-MASQ').length === biggest), 'the biggest port got a stage of its own');
  // Stages, then a main restore that leaves the staged ports out, leave what one full restore leaves.
  const after = [...stages, serializeFull(model, { staged: new Set(ports) }).text].reduce((rs, t) => parseIptablesSave(t, rs), emptyRuleset());
  const norm = (rs: ReturnType<typeof emptyRuleset>): string[] => [...rs.tables.values()].flatMap((t) => [...t.chains.values()].map((c) => `${t.name} ${c.name} ${c.rules.map((r) => r.args.join(' ')).join('|')}`)).sort();
  assert.deepEqual(norm(after), norm(parseIptablesSave(serializeFull(model).text)));
  assert.deepEqual(serializeStages(model, [], 10), []);
});
