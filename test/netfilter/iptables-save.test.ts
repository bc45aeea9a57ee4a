import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIptablesSave, serializeRuleset, tokenize, unknownParts, IptablesParseError, type Match, type Target } from '../../src/netfilter/iptables-save.js';
import { fixture } from './fixtures.js';

const rule = (line: string, table = 'nat') => {
  const chain = line.split(' ')[1] ?? '';
  const rs = parseIptablesSave(`*${table}\n:${chain} - [0:0]\n${line}\nCOMMIT\n`);
  const r = rs.tables.get(table)?.chains.get(chain)?.rules[0];
  assert.ok(r);
  return r;
};

test('iptables-save dump round-trips (without the header comments)', () => {
  const text = fixture('node-iptables-save.txt');
  const expected = text.split('\n').filter((l) => !l.startsWith('#')).join('\n');
  assert.equal(serializeRuleset(parseIptablesSave(text)), expected);
  assert.deepEqual(unknownParts(parseIptablesSave(text)), []);
});

test('chains, policies and counters', () => {
  const rs = parseIptablesSave(fixture('node-iptables-save.txt'));
  assert.deepEqual([...rs.tables.keys()], ['mangle', 'filter', 'nat']);
  const input = rs.tables.get('filter')?.chains.get('INPUT');
  assert.equal(input?.builtin, true);
  assert.equal(input?.policy, 'ACCEPT');
  assert.deepEqual(input?.counters, { packets: 1024, bytes: 65536 });
  assert.equal(rs.tables.get('nat')?.chains.get('KUBE-SVC-WEBWEBWEBWEBWEBW')?.rules.length, 4);
  assert.equal(rs.tables.get('nat')?.chains.get('KUBE-MARK-MASQ')?.policy, undefined);
});

test('tokenize: quotes and escapes', () => {
  const cases: [string, string[]][] = [
    ['-A X -m comment --comment "a b" -j Y', ['-A', 'X', '-m', 'comment', '--comment', 'a b', '-j', 'Y']],
    [`--comment 'single q'`, ['--comment', 'single q']],
    ['--comment "say \\"hi\\""', ['--comment', 'say "hi"']],
    ['--comment ""', ['--comment', '']],
  ];
  for (const [input, want] of cases) assert.deepEqual(tokenize(input), want, input);
  assert.throws(() => tokenize('--comment "open', 3), IptablesParseError);
});

interface MatchCase { name: string; line: string; table?: string; check: (m: readonly Match[], t: Target | undefined) => void }
const matchCases: MatchCase[] = [
  { name: 'tcp dport, negated source', line: '-A X ! -s 10.0.0.0/8 -d 1.2.3.4/32 -p tcp -m tcp --dport 80 -j Y', check: (m, t) => {
    assert.deepEqual(m[0], { kind: 'port', module: 'tcp', args: ['-m', 'tcp', '--dport', '80'], dport: { value: { from: 80, to: 80 }, negated: false } });
    assert.equal(t?.kind, 'jump');
  } },
  { name: 'restore order: -m tcp -p tcp --dport', line: '-A X -m tcp -p tcp -d 1.2.3.4 --dport 8000:8080 -j Y', check: (m) => {
    assert.equal(m[0]?.kind === 'port' && m[0].dport?.value.to, 8080);
  } },
  { name: 'implicit protocol match', line: '-A X -p udp --dport 53 -j ACCEPT', check: (m) => assert.equal(m[0]?.kind === 'port' && m[0].module, 'udp') },
  { name: 'multiport', line: '-A X -p tcp -m multiport --dports 80,443,8000:8100 -j ACCEPT', check: (m) => {
    assert.equal(m[0]?.kind === 'multiport' && m[0].ports.value.length, 3);
  } },
  { name: 'addrtype with limit-iface-in', line: '-A X -m addrtype --dst-type LOCAL --limit-iface-in -j Y', check: (m) => {
    assert.ok(m[0]?.kind === 'addrtype' && m[0].limitIfaceIn && m[0].dstType?.value[0] === 'LOCAL');
  } },
  { name: 'negated mark', line: '-A X -m mark ! --mark 0x4000/0x4000 -j RETURN', check: (m, t) => {
    assert.deepEqual(m[0]?.kind === 'mark' && m[0].mark, { value: { value: 0x4000, mask: 0x4000 }, negated: true });
    assert.equal(t?.kind, 'RETURN');
  } },
  { name: 'conntrack and state', line: '-A X -m conntrack ! --ctstate RELATED,ESTABLISHED -m state --state NEW -j DROP', check: (m) => {
    assert.equal(m[0]?.kind, 'conntrack');
    assert.equal(m[1]?.kind === 'state' && m[1].states.value[0], 'NEW');
  } },
  { name: 'statistic', line: '-A X -m statistic --mode random --probability 0.33333333349 -j Y', check: (m) => {
    assert.equal(m[0]?.kind === 'statistic' && m[0].probability, 0.33333333349);
  } },
  { name: 'recent rcheck', line: '-A X -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j KUBE-SEP-A', check: (m) => {
    assert.ok(m[0]?.kind === 'recent' && m[0].op === 'rcheck' && m[0].seconds === 10800 && m[0].name === 'KUBE-SEP-A' && m[0].reap && m[0].side === 'source');
  } },
  { name: 'ipset', line: '-A X -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT', check: (m) => {
    assert.ok(m[0]?.kind === 'set' && m[0].name === 'KUBE-CLUSTER-IP' && m[0].flags.join() === 'dst,dst');
  } },
  { name: 'physdev', line: '-A X -m physdev --physdev-is-bridged -j ACCEPT', table: 'filter', check: (m) => assert.equal(m[0]?.kind, 'physdev') },
  { name: 'interfaces with wildcard', line: '-A X ! -i veth+ -o eth0 -j ACCEPT', table: 'filter', check: (_m, t) => assert.equal(t?.kind, 'ACCEPT') },
  { name: 'DNAT', line: '-A X -p tcp -m tcp -j DNAT --to-destination 10.1.2.3:8080', check: (_m, t) => {
    assert.deepEqual(t?.kind === 'DNAT' && t.to, { ip: '10.1.2.3', port: 8080, ipRange: false });
  } },
  { name: 'SNAT', line: '-A X -j SNAT --to-source 192.0.2.1', check: (_m, t) => assert.ok(t?.kind === 'SNAT' && t.to?.ip === '192.0.2.1') },
  { name: 'MASQUERADE --random-fully', line: '-A X -j MASQUERADE --random-fully', check: (_m, t) => assert.ok(t?.kind === 'MASQUERADE' && t.randomFully) },
  { name: 'MARK --or-mark = set-xmark v/v', line: '-A X -j MARK --or-mark 0x4000', check: (_m, t) => assert.ok(t?.kind === 'MARK' && t.value === 0x4000 && t.mask === 0x4000) },
  { name: 'MARK --xor-mark = set-xmark v/0', line: '-A X -j MARK --xor-mark 0x4000', check: (_m, t) => assert.ok(t?.kind === 'MARK' && t.value === 0x4000 && t.mask === 0) },
  { name: 'MARK --and-mark', line: '-A X -j MARK --and-mark 0xffffbfff', check: (_m, t) => assert.ok(t?.kind === 'MARK' && t.value === 0 && t.mask === 0x4000) },
  { name: 'REJECT', line: '-A X -j REJECT --reject-with tcp-reset', table: 'filter', check: (_m, t) => assert.ok(t?.kind === 'REJECT' && t.rejectWith === 'tcp-reset') },
  { name: 'REDIRECT', line: '-A X -p tcp -j REDIRECT --to-ports 36000', check: (_m, t) => assert.ok(t?.kind === 'REDIRECT' && t.toPort === 36000) },
  { name: 'LOG', line: '-A X -j LOG --log-prefix "kube: "', table: 'filter', check: (_m, t) => assert.ok(t?.kind === 'LOG' && t.prefix === 'kube: ') },
  { name: 'unknown match kept', line: '-A X -m u32 --u32 "0x0>>0x16&0x3c@0x8=0x1" -j ACCEPT', table: 'filter', check: (m) => {
    assert.ok(m[0]?.kind === 'unknown' && m[0].module === 'u32');
  } },
  { name: 'unknown target kept', line: '-A X -j TPROXY --on-port 1', table: 'mangle', check: (_m, t) => assert.equal(t?.kind, 'unknown') },
];
for (const c of matchCases) {
  test(`rule: ${c.name}`, () => {
    const r = rule(c.line, c.table);
    c.check(r.matches, r.target);
  });
}

test('counter prefixes and the restore-input commands', () => {
  const rs = parseIptablesSave([
    '*nat', ':PREROUTING ACCEPT [5:300]', ':KUBE-A - [0:0]', ':KUBE-B - [0:0]', ':KUBE-C - [0:0]',
    '[7:420] -A PREROUTING -j KUBE-A', '-A KUBE-A -j RETURN', '-A KUBE-B -j RETURN', '-A KUBE-C -j RETURN', '-I KUBE-A -j KUBE-B', '-X KUBE-C', 'COMMIT',
  ].join('\n'));
  const nat = rs.tables.get('nat');
  assert.deepEqual(nat?.chains.get('PREROUTING')?.rules[0]?.counters, { packets: 7, bytes: 420 });
  assert.equal(nat?.chains.get('KUBE-A')?.rules[0]?.text, '-A KUBE-A -j KUBE-B');
  assert.equal(nat?.chains.has('KUBE-C'), false);
  // As the kernel refuses it: a chain a rule jumps to cannot be deleted.
  assert.throws(() => parseIptablesSave('*nat\n-X KUBE-B\nCOMMIT\n', rs), /line 2: cannot delete chain KUBE-B: KUBE-A jumps to it/);
  // Built-in chains the input does not declare still exist (policy ACCEPT).
  assert.equal(nat?.chains.get('POSTROUTING')?.policy, 'ACCEPT');
});

test('--noflush layering: a later input replaces only the chains it declares', () => {
  const base = parseIptablesSave('*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j ACCEPT\n-A KUBE-B -j ACCEPT\nCOMMIT\n');
  const rs = parseIptablesSave('*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j RETURN\nCOMMIT\n', base);
  assert.equal(rs.tables.get('nat')?.chains.get('KUBE-A')?.rules[0]?.target?.kind, 'RETURN');
  assert.equal(rs.tables.get('nat')?.chains.get('KUBE-B')?.rules[0]?.target?.kind, 'ACCEPT');
  assert.equal(base.tables.get('nat')?.chains.get('KUBE-A')?.rules[0]?.target?.kind, 'ACCEPT');
});

const errors: [string, string, RegExp][] = [
  ['rule before a table', '-A X -j ACCEPT\n', /line 1: .*before any \*table/],
  ['missing COMMIT', '*nat\n:X - [0:0]\n', /no COMMIT/],
  ['undeclared chain', '*nat\n-A NOPE -j ACCEPT\nCOMMIT\n', /line 2: chain NOPE does not exist/],
  ['stray argument', '*nat\n:X - [0:0]\n-A X foo\nCOMMIT\n', /line 3: unexpected argument/],
  ['policy on a user chain', '*nat\n:X DROP [0:0]\nCOMMIT\n', /line 2: user chain X cannot have policy/],
];
for (const [name, text, re] of errors) {
  test(`parse error: ${name}`, () => {
    assert.throws(() => parseIptablesSave(text), (e: unknown) => e instanceof IptablesParseError && e.code === 'KP_ERR_TRACE_PARSE' && re.test(e.message));
  });
}
