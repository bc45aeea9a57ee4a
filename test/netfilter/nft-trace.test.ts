import { test } from 'node:test';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { IptablesEvaluator } from '../../src/netfilter/iptables-eval.js';
import { parseIptablesSave } from '../../src/netfilter/iptables-save.js';
import { NftablesEvaluator } from '../../src/netfilter/nft-eval.js';
import { parseNftJson } from '../../src/netfilter/nft-ruleset.js';
import { formatTrace, tracePacket, type NodeContext, type TracePacket, type TraceResult } from '../../src/netfilter/trace.js';
import { assertGolden } from '../helpers/golden.js';

/** Reads test/fixtures/nft/<name> (`nft -j list ruleset` of a test/golden/nftables file applied in a netns). */
function nftFixture(name: string): string {
  return readFileSync(fileURLToPath(new URL(`../../../test/fixtures/nft/${name}`, import.meta.url)), 'utf8');
}

// The fixtures are `nft -j list ruleset` of test/golden/nftables/<name>.nft applied in a network
// namespace (render options: node IP 192.168.0.2, cluster CIDR 10.0.0.0/8).
const NODE_IP = '192.168.0.2';
const node: NodeContext = { localAddresses: [NODE_IP] };

function trace(fixture: string, p: Partial<TracePacket> & { dst: string; dport: number }, ctx: NodeContext = node, affinity: 'fork' | 'dump' = 'fork'): TraceResult {
  const rs = parseNftJson(nftFixture(`${fixture}.json`));
  const packet: TracePacket = { src: '203.0.113.200', srcPort: 40000, protocol: 'tcp', origin: 'external', inInterface: 'eth0', ...p };
  return tracePacket(packet, ctx, [new NftablesEvaluator(rs, packet.dst.includes(':') ? 'ipv6' : 'ipv4', { affinity })]);
}

const near = (a: number, b: number): boolean => Math.abs(a - b) < 1e-6;
const EP = ['10.180.0.1:80', '10.180.0.2:80', '10.180.0.3:80'];

interface Case { name: string; run: () => TraceResult; check: (r: TraceResult) => void }

const cases: Case[] = [
  {
    name: 'clusterip-three-endpoints',
    run: () => trace('clusterip', { src: '10.1.0.5', dst: '172.30.0.41', dport: 80, inInterface: 'cni0' }),
    check: (r) => {
      assert.deepEqual(r.choices.map((c) => `${c.ip}:${c.port}`), EP);
      for (const c of r.choices) assert.ok(near(c.probability, 1 / 3), String(c.probability));
      assert.ok(r.outcomes.every((o) => o.verdict === 'ACCEPT' && o.delivery === 'forwarded' && o.snat === undefined));
      assert.deepEqual(r.outcomes[0]?.hooks, ['PREROUTING', 'FORWARD', 'POSTROUTING']);
      assert.ok(r.outcomes.every((o) => o.dnat?.by.chain.startsWith('endpoint-') === true));
    },
  },
  {
    name: 'clusterip-from-outside-cluster-cidr',
    // Source outside 10.0.0.0/8: the service chain marks for masquerade first.
    run: () => trace('clusterip', { dst: '172.30.0.41', dport: 80 }),
    check: (r) => {
      assert.equal(r.outcomes.length, 3);
      assert.ok(r.outcomes.every((o) => o.snat?.kind === 'MASQUERADE' && o.snat.randomFully && o.mark === 0));
    },
  },
  {
    name: 'clusterip-wrong-port-reject',
    run: () => trace('clusterip', { src: '10.1.0.5', dst: '172.30.0.41', dport: 81 }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.verdict, 'REJECT');
      assert.equal(r.outcomes[0]?.matchedRules.at(-1)?.chain, 'cluster-ips-check');
    },
  },
  {
    name: 'nodeport-external-masquerade',
    run: () => trace('nodeport', { dst: NODE_IP, dport: 3001 }),
    check: (r) => {
      assert.ok(r.choices.length >= 1);
      assert.ok(r.outcomes.every((o) => o.verdict === 'ACCEPT' && o.delivery === 'forwarded' && o.snat?.kind === 'MASQUERADE'));
      assert.ok(near(r.choices.reduce((a, c) => a + c.probability, 0), 1));
    },
  },
  {
    name: 'nodeport-on-a-non-local-address',
    // fib daddr type local: a NodePort on an address that is not the node's does not match.
    run: () => trace('nodeport', { dst: '192.168.0.99', dport: 3001 }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.dnat, undefined);
    },
  },
  {
    name: 'no-endpoints-reject',
    run: () => trace('no-endpoints', { src: '10.1.0.5', dst: '172.30.0.41', dport: 80 }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.verdict, 'REJECT');
      assert.equal(r.outcomes[0]?.rejectWith, 'icmp port-unreachable');
      // Rejected in filter-forward (priority -110): the nat chain does not find the service.
      assert.deepEqual(r.outcomes[0]?.hooks, ['PREROUTING', 'FORWARD']);
    },
  },
  {
    name: 'no-endpoints-nodeport-reject',
    run: () => trace('no-endpoints', { dst: NODE_IP, dport: 3001 }),
    check: (r) => {
      assert.equal(r.outcomes[0]?.verdict, 'REJECT');
      assert.deepEqual(r.outcomes[0]?.hooks, ['PREROUTING', 'INPUT']);
    },
  },
  {
    name: 'loadbalancer-source-denied',
    run: () => trace('loadbalancer-source-ranges', { src: '198.51.100.7', dst: '1.2.3.4', dport: 80 }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.verdict, 'DROP');
      // Dropped in filter-prerouting (-110), before the nat chain (-100) could DNAT it.
      assert.deepEqual(r.outcomes[0]?.hooks, ['PREROUTING']);
      assert.equal(r.outcomes[0]?.dnat, undefined);
    },
  },
  {
    name: 'loadbalancer-source-allowed',
    run: () => trace('loadbalancer-source-ranges', { src: '192.168.0.77', dst: '1.2.3.4', dport: 80 }),
    check: (r) => {
      assert.ok(r.outcomes.length > 0);
      assert.ok(r.outcomes.every((o) => o.verdict === 'ACCEPT' && o.dnat !== undefined));
    },
  },
  {
    name: 'local-policy-preserves-client-ip',
    run: () => trace('etp-local', { dst: NODE_IP, dport: 3001 }),
    check: (r) => {
      assert.deepEqual(r.choices.map((c) => [`${c.ip}:${c.port}`, c.probability, c.masquerade]), [['10.180.0.2:80', 1, false]]);
    },
  },
  {
    name: 'local-policy-from-a-pod',
    // Pod traffic short-circuits to the cluster-wide service chain: all endpoints.
    run: () => trace('etp-local', { src: '10.1.0.5', dst: '1.2.3.4', dport: 80, inInterface: 'cni0' }),
    check: (r) => {
      assert.deepEqual(r.choices.map((c) => c.ip), ['10.180.0.1', '10.180.0.2']);
    },
  },
  {
    name: 'hairpin',
    run: () => trace('clusterip', { src: '10.180.0.2', dst: '172.30.0.41', dport: 80, inInterface: 'cni0' }),
    check: (r) => {
      assert.deepEqual(r.choices.map((c) => [c.ip, c.masquerade]), [['10.180.0.1', false], ['10.180.0.2', true], ['10.180.0.3', false]]);
    },
  },
  {
    name: 'affinity',
    run: () => trace('affinity', { src: '10.1.0.5', dst: '172.30.0.41', dport: 80, inInterface: 'cni0' }),
    check: (r) => {
      assert.deepEqual(r.choices.map((c) => [c.ip, c.probability]), [['10.180.0.1', 0.5], ['10.180.0.2', 0.5]]);
      const sticky = r.outcomes.filter((o) => o.assumptions.some((a) => a.seen));
      assert.deepEqual(sticky.map((o) => [o.assumptions.find((a) => a.seen)?.list.split('__')[1], o.destination.ip, o.probability]), [
        ['10.180.0.1/80', '10.180.0.1', 1], ['10.180.0.2/80', '10.180.0.2', 1],
      ]);
    },
  },
  {
    name: 'affinity-known',
    run: () => trace('affinity', { src: '10.1.0.5', dst: '172.30.0.41', dport: 80, inInterface: 'cni0' }, {
      localAddresses: [NODE_IP], recent: { 'affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80': [], 'affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80': ['10.1.0.5'] },
    }),
    check: (r) => {
      assert.deepEqual(r.outcomes.map((o) => [o.destination.ip, o.probability]), [['10.180.0.2', 1]]);
    },
  },
  {
    name: 'clusterip-from-the-node',
    run: () => trace('clusterip', { src: NODE_IP, dst: '172.30.0.41', dport: 80, origin: 'local' }),
    check: (r) => {
      assert.equal(r.outcomes.length, 3);
      assert.ok(r.outcomes.every((o) => o.snat?.kind === 'MASQUERADE' && o.delivery === 'sent'));
      assert.deepEqual(r.outcomes[0]?.hooks, ['OUTPUT', 'POSTROUTING']);
    },
  },
  {
    name: 'affinity-live-dump',
    // A dump of a node where 10.1.0.5 is already in the second endpoint's affinity set.
    // Saved file: the address in the dump is seen; the other set forks (it may have been added since).
    run: () => trace('affinity-live', { src: '10.1.0.5', dst: '172.30.0.41', dport: 80, inInterface: 'cni0' }),
    check: (r) => {
      assert.deepEqual(r.outcomes.map((o) => [o.destination.ip, o.probability, o.assumptions.map((a) => a.seen)]), [['10.180.0.2', 1, [false]], ['10.180.0.1', 1, [true]]]);
    },
  },
  {
    name: 'affinity-live-namespace',
    // Read from the live namespace: the dump is the truth, no fork.
    run: () => trace('affinity-live', { src: '10.1.0.5', dst: '172.30.0.41', dport: 80, inInterface: 'cni0' }, node, 'dump'),
    check: (r) => {
      assert.deepEqual(r.outcomes.map((o) => [o.destination.ip, o.probability, o.assumptions.length]), [['10.180.0.2', 1, 0]]);
    },
  },
  {
    name: 'affinity-live-namespace-new-client',
    run: () => trace('affinity-live', { src: '10.1.0.6', dst: '172.30.0.41', dport: 80, inInterface: 'cni0' }, node, 'dump'),
    check: (r) => {
      assert.deepEqual(r.outcomes.map((o) => [o.destination.ip, o.probability, o.assumptions.length]), [['10.180.0.1', 0.5, 0], ['10.180.0.2', 0.5, 0]]);
    },
  },
  {
    name: 'ipv6-clusterip',
    run: () => trace('ipv6', { src: 'fd00:10::5', dst: 'fd00:172:30::41', dport: 80, inInterface: 'cni0' }, { localAddresses: ['fd00:192:168::2'] }),
    check: (r) => {
      assert.ok(r.choices.length >= 1);
      assert.ok(r.choices.every((c) => c.ip.includes(':') && c.verdict === 'ACCEPT'));
    },
  },
  {
    name: 'udp-dns',
    run: () => trace('udp-sctp', { src: '10.1.0.5', dst: '172.30.0.10', dport: 53, protocol: 'udp', inInterface: 'cni0' }),
    check: (r) => {
      assert.ok(r.choices.length >= 1);
      assert.ok(r.outcomes.every((o) => o.verdict === 'ACCEPT' && o.dnat?.by.chain.includes('/udp/') === true));
    },
  },
  {
    name: 'etp-local-no-local-endpoints-drop',
    run: () => trace('overall', { dst: '1.2.3.4', dport: 80 }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.verdict, 'DROP');
    },
  },
];

for (const c of cases) {
  test(`nft trace: ${c.name}`, () => {
    const r = c.run();
    c.check(r);
    assert.equal(r.truncated, false);
    assertGolden(`trace/nft-${c.name}.txt`, formatTrace(r));
  });
}

test('nft trace: base chains interleave with iptables tables by priority', () => {
  // An iptables nat PREROUTING that DNATs everything to port 9999 (priority -100, like
  // nft's nat-prerouting) and a raw-table rule; the nft filter-prerouting (-110) runs between.
  const ipt = parseIptablesSave([
    '*raw', ':PREROUTING ACCEPT [0:0]', '-A PREROUTING -p tcp -j ACCEPT', 'COMMIT',
    '*mangle', ':PREROUTING ACCEPT [0:0]', 'COMMIT',
    '*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', 'COMMIT', '',
  ].join('\n'));
  const nft = parseNftJson(nftFixture('loadbalancer-source-ranges.json'));
  const r = tracePacket({ src: '198.51.100.7', srcPort: 40000, dst: '1.2.3.4', dport: 80, protocol: 'tcp', origin: 'external', inInterface: 'eth0' }, node,
    [new IptablesEvaluator(ipt), new NftablesEvaluator(nft)]);
  const order = r.trunk.flatMap((e) => (e.kind === 'stage' ? [`${e.evaluator}:${e.label}`] : e.kind === 'conntrack' ? ['conntrack'] : []));
  assert.deepEqual(order, ['iptables:raw', 'conntrack', 'iptables:mangle', 'nftables:ip kube-proxy filter-prerouting']);
  assert.equal(r.outcomes[0]?.verdict, 'DROP');
});

test('nft trace: an IPv6 packet ignores ip-family tables', () => {
  const rs = parseNftJson(nftFixture('clusterip.json'));
  const ev = new NftablesEvaluator(rs, 'ipv6');
  assert.deepEqual(ev.stages(), []);
  assert.equal(new NftablesEvaluator(rs).stages().length, 8);
});

test('nft trace: unknown expressions are reported and do not match', () => {
  const doc = {
    nftables: [
      { table: { family: 'inet', name: 't' } },
      { chain: { family: 'inet', table: 't', name: 'in', type: 'filter', hook: 'input', prio: 0, policy: 'accept' } },
      { rule: { family: 'inet', table: 't', chain: 'in', handle: 2, expr: [{ match: { op: '==', left: { osf: { key: 'name' } }, right: 'Linux' } }, { drop: null }] } },
      { rule: { family: 'inet', table: 't', chain: 'in', handle: 3, expr: [{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 6 } }, { tcp_mss_clamp: 1 }, { drop: null }] } },
      { rule: { family: 'inet', table: 't', chain: 'in', handle: 4, expr: [{ match: { op: '==', left: { meta: { key: 'mark' } }, right: 0 } }, { counter: { packets: 0, bytes: 0 } }, { mangle: { key: { meta: { key: 'mark' } }, value: { '|': [{ meta: { key: 'mark' } }, 16] } } }] } },
      { rule: { family: 'inet', table: 't', chain: 'in', handle: 5, expr: [{ match: { op: '==', left: { '&': [{ meta: { key: 'mark' } }, 16] }, right: 16 } }, { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: { range: [80, 90] } } }, { reject: { type: 'tcp reset' } }] } },
    ],
  };
  const r = tracePacket({ src: '10.0.0.1', dst: NODE_IP, dport: 85, protocol: 'tcp', origin: 'external', inInterface: 'eth0' }, node, [new NftablesEvaluator(parseNftJson(JSON.stringify(doc)))]);
  assert.equal(r.outcomes.length, 1);
  assert.equal(r.outcomes[0]?.verdict, 'REJECT');
  assert.equal(r.outcomes[0]?.rejectWith, 'tcp reset');
  assert.equal(r.outcomes[0]?.mark, 16);
  assert.ok(r.notes.some((n) => n.includes('osf')), r.notes.join('\n'));
  assert.ok(r.notes.some((n) => n.includes('tcp_mss_clamp')), r.notes.join('\n'));
  assertGolden('trace/nft-unknown-expression.txt', formatTrace(r));
});

test('nft trace: every service of every fixture traces without warnings, probabilities sum to 1', () => {
  for (const f of readdirSync(fileURLToPath(new URL('../../../test/fixtures/nft/', import.meta.url)))) {
    const rs = parseNftJson(nftFixture(f));
    for (const t of rs.tables.values()) {
      const v6 = t.family === 'ip6';
      const ctx: NodeContext = { localAddresses: [v6 ? 'fd00:192:168::2' : NODE_IP] };
      for (const mapName of ['service-ips', 'service-nodeports', 'no-endpoint-services', 'no-endpoint-nodeports', 'firewall-ips']) {
        for (const e of t.sets.get(mapName)?.elems ?? []) {
          const key = e.key;
          const parts = typeof key === 'object' && key !== null && !Array.isArray(key) && Array.isArray(key['concat']) ? key['concat'] : [];
          const [a, b, c] = parts.length === 3 ? parts : [ctx.localAddresses[0] ?? '', parts[0], parts[1]];
          if (typeof a !== 'string' || (b !== 'tcp' && b !== 'udp' && b !== 'sctp') || typeof c !== 'number') assert.fail(`${f} ${mapName}: unexpected key ${JSON.stringify(key)}`);
          for (const src of [v6 ? 'fd00:10::5' : '10.1.0.5', v6 ? '2001:db8::7' : '198.51.100.7']) {
            const r = tracePacket({ src, srcPort: 40000, dst: a, dport: c, protocol: b, origin: 'external', inInterface: 'eth0' }, ctx, [new NftablesEvaluator(rs, v6 ? 'ipv6' : 'ipv4')]);
            const where: string = `${f} ${mapName} ${src} -> ${a} ${b} ${c}`;
            assert.deepEqual(r.notes, [], where);
            const total = r.outcomes.filter((o) => o.assumptions.every((x) => !x.seen)).reduce((s, o) => s + o.probability, 0);
            assert.ok(near(total, 1), `${where}: ${total}`);
          }
        }
      }
    }
  }
});
