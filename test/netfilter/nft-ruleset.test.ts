import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { looksLikeNftJson, mergeNftRulesets, NftParseError, parseNftJson, ruleText, withoutTables } from '../../src/netfilter/nft-ruleset.js';

/** Reads test/fixtures/nft/<name> (`nft -j list ruleset` of a test/golden/nftables file applied in a netns). */
function nftFixture(name: string): string {
  return readFileSync(fileURLToPath(new URL(`../../../test/fixtures/nft/${name}`, import.meta.url)), 'utf8');
}

test('nft ruleset: a dump of the clusterip golden', () => {
  const rs = parseNftJson(nftFixture('clusterip.json'));
  assert.deepEqual([...rs.tables.keys()], ['ip kube-proxy']);
  assert.deepEqual(rs.skipped, []);
  const t = rs.tables.get('ip kube-proxy');
  assert.ok(t);
  const base = [...t.chains.values()].filter((c) => c.hook !== undefined).map((c) => `${c.name} ${c.type ?? ''} ${c.hook ?? ''} ${c.prio ?? ''} ${c.policy ?? ''}`);
  assert.deepEqual(base, [
    'filter-prerouting filter prerouting -110 accept', 'filter-input filter input -110 accept', 'filter-forward filter forward -110 accept',
    'filter-output filter output -110 accept', 'filter-output-post-dnat filter output -90 accept', 'nat-prerouting nat prerouting -100 accept',
    'nat-output nat output -100 accept', 'nat-postrouting nat postrouting 100 accept',
  ]);
  assert.deepEqual(t.sets.get('cluster-ips')?.elems.map((e) => e.key), ['172.30.0.41']);
  const svc = t.sets.get('service-ips');
  assert.equal(svc?.kind, 'map');
  assert.deepEqual(svc?.type, ['ipv4_addr', 'inet_proto', 'inet_service']);
  assert.deepEqual(svc?.elems, [{ key: { concat: ['172.30.0.41', 'tcp', 80] }, data: { goto: { target: 'service-ULMVA6XW-ns1/svc1/tcp/p80' } } }]);
  assert.deepEqual(t.chains.get('services')?.rules.map((r) => r.text), [
    'ip daddr . meta l4proto . th dport vmap @service-ips',
    'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports',
  ]);
  assert.deepEqual(t.chains.get('masquerading')?.rules.map((r) => r.text), [
    'meta mark and 0x00004000 == 0 return', 'meta mark set meta mark xor 0x00004000', 'masquerade fully-random',
  ]);
});

test('nft ruleset: map elements with comments are unwrapped', () => {
  const t = parseNftJson(nftFixture('no-endpoints.json')).tables.get('ip kube-proxy');
  assert.deepEqual(t?.sets.get('no-endpoint-nodeports')?.elems, [{ key: { concat: ['tcp', 3001] }, data: { goto: { target: 'reject-chain' } } }]);
});

test('nft ruleset: every fixture parses, every rule has a text with no raw JSON', () => {
  for (const f of readdirSync(fileURLToPath(new URL('../../../test/fixtures/nft/', import.meta.url)))) {
    const rs = parseNftJson(nftFixture(f));
    assert.deepEqual(rs.skipped, [], f);
    for (const t of rs.tables.values()) for (const c of t.chains.values()) for (const r of c.rules) {
      assert.doesNotMatch(r.text.replace(/ comment ".*"$/, ''), /["{}]\s*"|":/, `${f}: ${r.text}`);
    }
  }
});

test('nft ruleset: content detection and bad input', () => {
  assert.equal(looksLikeNftJson(nftFixture('clusterip.json')), true);
  assert.equal(looksLikeNftJson('*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n'), false);
  assert.equal(looksLikeNftJson('  {"nftables": []}'), true);
  assert.throws(() => parseNftJson('{"nftables": '), NftParseError);
  assert.throws(() => parseNftJson('{"tables": []}'), /no "nftables" array/);
  const rs = parseNftJson(JSON.stringify({ nftables: [
    { metainfo: { version: '1.0.9', json_schema_version: 1 } }, 42, { flowtable: { family: 'ip', table: 't', name: 'f' } },
    { chain: { family: 'ip', table: 't' } }, { rule: { family: 'ip', table: 't', chain: 'c', expr: [{ accept: null }] } },
  ] }));
  assert.deepEqual(rs.skipped, ['a non-object entry', 'flowtable objects are not used by the tracer', 'chain without a name']);
  // A rule before its chain: the chain is created.
  assert.deepEqual(rs.tables.get('ip t')?.chains.get('c')?.rules.map((r) => r.text), ['accept']);
});

test('nft ruleset: merge and table removal', () => {
  const a = parseNftJson(nftFixture('clusterip.json'));
  const b = parseNftJson(nftFixture('ipv6.json'));
  const m = mergeNftRulesets(a, b);
  assert.deepEqual([...m.tables.keys()], ['ip kube-proxy', 'ip6 kube-proxy']);
  assert.deepEqual([...withoutTables(m, ['ip kube-proxy']).tables.keys()], ['ip6 kube-proxy']);
  assert.equal(mergeNftRulesets(undefined, b), b);
});

test('nft ruleset: rule text of less common expressions', () => {
  assert.equal(ruleText([{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null }]), 'ct state { established, related } accept');
  assert.equal(ruleText([{ match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: { range: [80, 90] } } }, { counter: null }, { snat: { addr: '10.0.0.1', port: 1000 } }]), 'tcp dport 80-90 counter snat to 10.0.0.1:1000');
  assert.equal(ruleText([{ set: { op: 'update', elem: { payload: { protocol: 'ip', field: 'saddr' } }, set: '@aff' } }]), 'update @aff { ip saddr }');
});
