import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { IptablesEvaluator, parseIpsetSave } from '../../src/netfilter/iptables-eval.js';
import { parseIptablesSave, unknownParts } from '../../src/netfilter/iptables-save.js';
import { KUBE_JUMPS, withKubeProxyJumps } from '../../src/netfilter/kube-jumps.js';
import { formatTrace, kernelProbability, tracePacket, type NodeContext, type TracePacket, type TraceResult } from '../../src/netfilter/trace.js';
import { JUMP_RULES, KUBELET_JUMP_RULES } from '../../src/backends/iptables/render.js';
import { assertGolden } from '../helpers/golden.js';
import { fixture, goldenSource } from './fixtures.js';

const NODE_IP = '198.18.0.10';
const dump = parseIptablesSave(fixture('node-iptables-save.txt'));
const node: NodeContext = { localAddresses: [NODE_IP] };

function trace(p: Partial<TracePacket> & { dst: string; dport: number }, ctx: NodeContext = node, text?: string): TraceResult {
  const rs = text === undefined ? dump : parseIptablesSave(text);
  const packet: TracePacket = { src: '198.19.1.30', srcPort: 40000, protocol: 'tcp', origin: 'external', inInterface: 'cni0', ...p };
  return tracePacket(packet, ctx, [new IptablesEvaluator(rs)]);
}

const near = (a: number, b: number): boolean => Math.abs(a - b) < 1e-6;

interface Case {
  name: string;
  run: () => TraceResult;
  check: (r: TraceResult) => void;
}

const cases: Case[] = [
  {
    name: 'clusterip-three-endpoints',
    run: () => trace({ dst: '198.18.100.10', dport: 80 }),
    check: (r) => {
      assert.deepEqual(r.choices.map((c) => `${c.ip}:${c.port}`), ['198.19.1.11:8080', '198.19.1.12:8080', '198.19.2.13:8080']);
      for (const c of r.choices) assert.ok(near(c.probability, 1 / 3), String(c.probability));
      assert.ok(r.outcomes.every((o) => o.verdict === 'ACCEPT' && o.delivery === 'forwarded' && o.snat === undefined));
      assert.deepEqual(r.outcomes[0]?.hooks, ['PREROUTING', 'FORWARD', 'POSTROUTING']);
    },
  },
  {
    name: 'clusterip-from-the-node',
    run: () => trace({ src: NODE_IP, dst: '198.18.100.10', dport: 80, origin: 'local' }),
    check: (r) => {
      // Source outside the cluster CIDR: KUBE-SVC marks for masquerade.
      assert.equal(r.outcomes.length, 3);
      assert.ok(r.outcomes.every((o) => o.snat?.kind === 'MASQUERADE' && o.delivery === 'sent'));
      assert.deepEqual(r.outcomes[0]?.hooks, ['OUTPUT', 'POSTROUTING']);
    },
  },
  {
    name: 'affinity',
    run: () => trace({ dst: '198.18.100.20', dport: 80 }),
    check: (r) => {
      assert.deepEqual(r.choices.map((c) => [c.ip, c.probability]), [['198.19.1.21', 0.5], ['198.19.2.22', 0.5]]);
      const sticky = r.outcomes.filter((o) => o.assumptions.some((a) => a.seen));
      assert.deepEqual(sticky.map((o) => [o.assumptions.find((a) => a.seen)?.list, o.destination.ip, o.probability]), [
        ['KUBE-SEP-STICKY1STICKY1ST', '198.19.1.21', 1], ['KUBE-SEP-STICKY2STICKY2ST', '198.19.2.22', 1],
      ]);
    },
  },
  {
    name: 'affinity-known-lists',
    run: () => trace({ dst: '198.18.100.20', dport: 80 }, { ...node, recent: { 'KUBE-SEP-STICKY1STICKY1ST': [], 'KUBE-SEP-STICKY2STICKY2ST': ['198.19.1.30'] } }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.destination.ip, '198.19.2.22');
    },
  },
  {
    name: 'nodeport-external-masquerade',
    run: () => trace({ src: '198.18.60.5', dst: NODE_IP, dport: 30080, inInterface: 'eth0' }),
    check: (r) => {
      assert.equal(r.choices.length, 3);
      assert.ok(r.outcomes.every((o) => o.snat?.kind === 'MASQUERADE' && o.snat.randomFully && o.delivery === 'forwarded' && o.verdict === 'ACCEPT'));
      assert.ok(r.outcomes.every((o) => o.dnat?.by.chain.startsWith('KUBE-SEP-') === true));
    },
  },
  {
    name: 'no-endpoints-reject',
    run: () => trace({ dst: '198.18.100.30', dport: 80 }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.verdict, 'REJECT');
      assert.equal(r.outcomes[0]?.rejectWith, 'icmp-port-unreachable');
      assert.ok(r.outcomes[0]?.matchedRules.some((m) => m.table === 'filter' && m.chain === 'KUBE-SERVICES'));
    },
  },
  {
    name: 'no-endpoints-nodeport-reject',
    run: () => trace({ src: '198.18.60.5', dst: NODE_IP, dport: 30030, inInterface: 'eth0' }),
    check: (r) => {
      assert.equal(r.outcomes[0]?.verdict, 'REJECT');
      assert.deepEqual(r.outcomes[0]?.hooks, ['PREROUTING', 'INPUT']);
      assert.ok(r.outcomes[0]?.matchedRules.some((m) => m.chain === 'KUBE-EXTERNAL-SERVICES'));
    },
  },
  {
    name: 'loadbalancer-source-allowed',
    run: () => trace({ src: '198.18.50.7', dst: '198.18.200.1', dport: 80, inInterface: 'eth0' }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.verdict, 'ACCEPT');
      assert.equal(r.outcomes[0]?.destination.ip, '198.19.2.41');
      assert.equal(r.outcomes[0]?.snat?.kind, 'MASQUERADE');
    },
  },
  {
    name: 'loadbalancer-source-denied',
    run: () => trace({ src: '198.18.60.5', dst: '198.18.200.1', dport: 80, inInterface: 'eth0' }),
    check: (r) => {
      assert.equal(r.outcomes[0]?.verdict, 'DROP');
      assert.equal(r.outcomes[0]?.dnat, undefined);
      assert.ok(r.outcomes[0]?.matchedRules.some((m) => m.chain === 'KUBE-PROXY-FIREWALL'));
    },
  },
  {
    name: 'local-policy-preserves-client-ip',
    run: () => trace({ src: '198.18.60.5', dst: NODE_IP, dport: 30050, inInterface: 'eth0' }),
    check: (r) => {
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]?.destination.ip, '198.19.1.51');
      assert.equal(r.outcomes[0]?.snat, undefined);
      assert.equal(r.outcomes[0]?.mark, 0);
    },
  },
  {
    name: 'local-policy-from-the-node',
    run: () => trace({ src: NODE_IP, dst: NODE_IP, dport: 30050, origin: 'local' }),
    check: (r) => {
      // LOCAL sources take the cluster-wide path and are masqueraded.
      assert.deepEqual(r.choices.map((c) => [c.ip, c.probability, c.masquerade]), [['198.19.1.51', 0.5, true], ['198.19.2.52', 0.5, true]]);
    },
  },
  {
    name: 'hairpin',
    run: () => trace({ src: '198.19.1.11', dst: '198.18.100.10', dport: 80 }),
    check: (r) => {
      const self = r.outcomes.find((o) => o.destination.ip === '198.19.1.11');
      assert.equal(self?.snat?.kind, 'MASQUERADE');
      assert.ok(r.outcomes.filter((o) => o !== self).every((o) => o.snat === undefined));
    },
  },
  {
    name: 'health-check-node-port',
    run: () => trace({ src: '198.18.60.5', dst: NODE_IP, dport: 30999, inInterface: 'eth0' }),
    check: (r) => {
      assert.equal(r.outcomes[0]?.delivery, 'local');
      assert.ok(r.outcomes[0]?.matchedRules.some((m) => m.chain === 'KUBE-NODEPORTS' && m.table === 'filter'));
    },
  },
  {
    name: 'unknown-match',
    run: () => trace({ dst: '198.18.100.99', dport: 80 }, node, [
      '*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]',
      '-A FORWARD -m u32 --u32 "0x0>>0x16&0x3c@0x8=0x1" -j DROP', '-A FORWARD -p tcp -m tcp --dport 80 -j LOG --log-prefix "web: "', 'COMMIT',
    ].join('\n')),
    check: (r) => {
      assert.equal(r.outcomes[0]?.verdict, 'ACCEPT');
      assert.ok(r.notes.some((n) => n.startsWith('unknown match u32') && n.includes('assumed not matching')), r.notes.join('; '));
    },
  },
];

for (const c of cases) {
  test(`trace: ${c.name}`, () => {
    const r = c.run();
    c.check(r);
    // Probabilities within each assumption group add up to 1.
    const groups = new Map<string, number>();
    for (const o of r.outcomes) {
      const k = JSON.stringify(o.assumptions);
      groups.set(k, (groups.get(k) ?? 0) + o.probability);
    }
    for (const [k, sum] of groups) assert.ok(near(sum, 1), `${k}: ${sum}`);
    assertGolden(`trace/${c.name}.txt`, formatTrace(r));
    // The result is plain data.
    assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
  });
}

test('nat chains see only the first packet; raw sees no conntrack yet', () => {
  const r = trace({ dst: '198.18.100.10', dport: 80 }, node, [
    '*raw', ':PREROUTING ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', '-A PREROUTING -m conntrack --ctstate INVALID -j MARK --set-xmark 0x1/0x1', 'COMMIT',
    '*mangle', ':PREROUTING ACCEPT [0:0]', '-A PREROUTING -m conntrack --ctstate NEW -j MARK --set-xmark 0x2/0x2', 'COMMIT',
    '*nat', ':PREROUTING ACCEPT [0:0]', '-A PREROUTING -d 198.18.100.10 -p tcp -j DNAT --to-destination 198.19.9.9:81', 'COMMIT',
    '*filter', ':FORWARD DROP [0:0]', '-A FORWARD -d 198.19.9.9 -p tcp -m tcp --dport 81 -m conntrack --ctstate NEW,DNAT -j ACCEPT', 'COMMIT',
  ].join('\n'));
  assert.equal(r.outcomes.length, 1);
  const o = r.outcomes[0];
  assert.equal(o?.mark, 3);
  assert.equal(o?.verdict, 'ACCEPT');
  assert.equal(o?.destination.port, 81);
});

test('locally generated packet to a local address loops back through PREROUTING and INPUT, nat skipped', () => {
  const r = trace({ src: NODE_IP, dst: NODE_IP, dport: 22, origin: 'local' }, node, '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DNAT --to-destination 1.1.1.1\nCOMMIT\n');
  assert.deepEqual(r.outcomes[0]?.hooks, ['OUTPUT', 'POSTROUTING', 'PREROUTING', 'INPUT']);
  assert.equal(r.outcomes[0]?.delivery, 'local');
  assert.equal(r.outcomes[0]?.dnat, undefined);
  assert.ok(r.trunk.some((e) => e.kind === 'stage-skipped' && e.label === 'nat' && e.hook === 'PREROUTING'));
});

test('external packets to 127.0.0.0/8 are martians unless route_localnet', () => {
  const text = '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n';
  assert.equal(trace({ dst: '127.0.0.1', dport: 80 }, node, text).outcomes[0]?.verdict, 'DROP');
  assert.equal(trace({ dst: '127.0.0.1', dport: 80 }, { ...node, routeLocalnet: true }, text).outcomes[0]?.delivery, 'local');
});

test('kernel statistic probability is quantized to 31 bits', () => {
  assert.equal(kernelProbability(0.3333333333), 715827883 / 0x80000000);
  assert.equal(kernelProbability(0.5), 0.5);
});

test('-m set is evaluated against ipset contents (IPVS-mode rules)', () => {
  const ipsets = parseIpsetSave('create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\nadd KUBE-CLUSTER-IP 198.18.100.10,tcp:80\n');
  const text = '*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-MARK-MASQ - [0:0]\n-A PREROUTING -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\nCOMMIT\n';
  assert.equal(trace({ dst: '198.18.100.10', dport: 80 }, { ...node, ipsets }, text).outcomes[0]?.mark, 0x4000);
  assert.equal(trace({ dst: '198.18.100.10', dport: 81 }, { ...node, ipsets }, text).outcomes[0]?.mark, 0);
  const unknown = trace({ dst: '198.18.100.10', dport: 80 }, node, text);
  assert.ok(unknown.notes.some((n) => n.includes('ipset KUBE-CLUSTER-IP: contents not given')));
});

test('kproxy --dry-run output: parses cleanly and, with the standard jumps added, traces', () => {
  const dir = fileURLToPath(new URL('../../../test/golden/iptables/', import.meta.url));
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.txt'))) {
    const rs = parseIptablesSave(goldenSource(`iptables/${f}`));
    assert.deepEqual(unknownParts(rs), [], f);
  }
  const j = withKubeProxyJumps(parseIptablesSave(goldenSource('iptables/clusterip.txt')));
  assert.ok(j.note !== undefined);
  const nat = j.ruleset.tables.get('nat');
  assert.ok(nat?.chains.get('PREROUTING')?.rules.some((r) => r.target?.kind === 'jump' && r.target.chain === 'KUBE-SERVICES'));
});

test('standard jumps agree with the iptables backend', () => {
  const backend = [...JUMP_RULES, ...KUBELET_JUMP_RULES].map((j) => `${j.table} ${j.chain} ${j.args.join(' ')}`);
  const ours = KUBE_JUMPS.map(([t, c, a]) => `${t} ${c} ${a.replace(/"/g, '')}`);
  assert.deepEqual(ours, backend);
});

test('goto returns to the caller of the chain that jumped; unknown targets continue', () => {
  const r = trace({ dst: '198.18.100.99', dport: 80 }, node, [
    '*mangle', ':PREROUTING ACCEPT [0:0]', ':A - [0:0]', ':B - [0:0]',
    '-A PREROUTING -j A', '-A PREROUTING -j MARK --set-xmark 0x10/0x10',
    '-A A -g B', '-A A -j MARK --set-xmark 0x1/0x1',
    '-A B -j TPROXY --on-port 1', '-A B -j MARK --set-xmark 0x2/0x2', 'COMMIT',
  ].join('\n'));
  // B returns past A's remaining rules straight to PREROUTING.
  assert.equal(r.outcomes[0]?.mark, 0x12);
  assert.ok(r.notes.some((n) => n.startsWith('unknown target TPROXY')));
});

test('IPv6 packets', () => {
  const r = tracePacket({ src: '2001:db8::5', dst: 'fd00::10', dport: 80, protocol: 'tcp', origin: 'external' }, { localAddresses: [] },
    [new IptablesEvaluator(parseIptablesSave('*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d fd00::10/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00::1:2]:8080\nCOMMIT\n'))]);
  assert.deepEqual(r.outcomes[0]?.destination, { ip: 'fd00::1:2', port: 8080 });
  assert.equal(r.outcomes[0]?.delivery, 'forwarded');
});
