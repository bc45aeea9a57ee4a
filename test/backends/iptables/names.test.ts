/** Upstream's chain names, hash and number formatting, and the purity of the renderer. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { base32, hashedName, hex, sha256, utf8 } from '../../../src/backends/iptables/hash.js';
import { endpointChainName, formatFixed, masqueradeMark, probability, serviceChainNames } from '../../../src/backends/iptables/names.js';
import { CANARY_CHAIN, CANARY_TABLES, JUMP_RULES, KUBELET_JUMP_RULES, jumpRulesFor, renderIptables } from '../../../src/backends/iptables/render.js';
import { serializeFull } from '../../../src/backends/iptables/serialize.js';
import { ep, slice, svc } from '../../helpers/objects.js';
import { OPTS, UPSTREAM_FAKE_OPTS, port, snapshot } from './fixture.js';

test('chain names match upstream (values from upstream proxier_test)', () => {
  const cases: [string, string, string][] = [
    ['ns1/svc1:p80', 'tcp', 'KUBE-SVC-XPGD46QRK7WJZT7O'],
    ['ns2/svc2:p80', 'tcp', 'KUBE-SVC-GNZBNJ2PO5MGZ6GT'],
    ['ns3/svc3:p80', 'tcp', 'KUBE-SVC-X27LE4BHSL4DOUIK'],
    ['ns4/svc4:p80', 'tcp', 'KUBE-SVC-4SW47YFZTEDKD3PK'],
    ['ns5/svc5:p80', 'tcp', 'KUBE-SVC-NUKIZ6OKUXPJNT4C'],
    ['ns2/svc2:p8080', 'tcp', 'KUBE-SVC-2VJB64SDSIJUP5T6'],
  ];
  for (const [spn, proto, want] of cases) assert.equal(serviceChainNames(spn, proto).cluster, want, spn);
  assert.equal(serviceChainNames('ns1/svc1:p80', 'TCP').cluster, 'KUBE-SVC-XPGD46QRK7WJZT7O', 'protocol is lower-cased');
  const n = serviceChainNames('ns5/svc5:p80', 'tcp');
  assert.deepEqual([n.local, n.external, n.firewall], ['KUBE-SVL-NUKIZ6OKUXPJNT4C', 'KUBE-EXT-NUKIZ6OKUXPJNT4C', 'KUBE-FW-NUKIZ6OKUXPJNT4C']);
  assert.equal(endpointChainName('ns1/svc1:p80', 'tcp', '10.180.0.1:80'), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
  assert.equal(endpointChainName('ns5/svc5:p80', 'tcp', '10.180.0.3:80'), 'KUBE-SEP-I77PXRDZVX7PMWMN');
  assert.equal(endpointChainName('ns1/svc1:p80', 'tcp', '10.0.1.1:80'), 'KUBE-SEP-SNQ3ZNILQDEJNDQO');
  assert.equal(endpointChainName('ns2/svc2:p8080', 'tcp', '10.0.2.1:8080'), 'KUBE-SEP-UHEGFW77JX3KXTOV');
});

test('sha256 equals node:crypto on random and edge-length inputs; base32 follows RFC 4648', () => {
  for (const len of [0, 1, 55, 56, 63, 64, 65, 119, 120, 200, 1000]) {
    const data = randomBytes(len);
    assert.equal(hex(sha256(data)), createHash('sha256').update(data).digest('hex'), `length ${len}`);
  }
  for (const s of ['ns1/svc1:p80tcp', 'ünïcødé/😀:x', '']) assert.deepEqual(Buffer.from(utf8(s)), Buffer.from(s, 'utf8'));
  const vectors: [string, string][] = [['', ''], ['f', 'MY======'], ['fo', 'MZXQ===='], ['foo', 'MZXW6==='], ['foob', 'MZXW6YQ='], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI======']];
  for (const [plain, enc] of vectors) assert.equal(base32(utf8(plain)), enc);
});

test('hashedName: prefix + the first characters of base32(sha256(utf8(text))) + suffix, for any text', () => {
  const texts = ['ns1/svc1:p80tcp', 'ünïcødé/😀:x', '', 'lone \ud800 surrogate', ...[55, 56, 64, 119, 120, 700].map((n) => 'a'.repeat(n - 1) + 'é')];
  for (const text of texts) {
    const b32 = base32(createHash('sha256').update(Buffer.from(text, 'utf8')).digest());
    for (const chars of [8, 16, 51]) {
      assert.equal(hashedName('KUBE-SEP-', text, chars), `KUBE-SEP-${b32.slice(0, chars)}`, `${JSON.stringify(text)} ${chars}`);
    }
    assert.equal(hashedName('', text, 8, `-${text}`), `${b32.slice(0, 8)}-${text}`);
  }
});

test('probabilities print as Go %0.10f (round half to even on the exact double)', () => {
  assert.equal(probability(1), '1.0000000000');
  assert.equal(probability(2), '0.5000000000');
  assert.equal(probability(3), '0.3333333333');
  assert.equal(probability(6), '0.1666666667');
  assert.equal(probability(1000), '0.0010000000');
  assert.equal(probability(1024), '0.0009765625');
  assert.equal(probability(2048), '0.0004882812'); // toFixed would say ...813
  assert.equal(probability(4096), '0.0002441406');
  for (let n = 1; n <= 5000; n++) {
    if (n === 2048) continue;
    assert.equal(probability(n), (1 / n).toFixed(10), `n=${n}`);
  }
  assert.equal(formatFixed(0.125, 2), '0.12');
  assert.equal(formatFixed(0.375, 2), '0.38');
});

test('masquerade mark: 1<<bit formatted like Go %#08x', () => {
  assert.equal(masqueradeMark(14), '0x00004000');
  assert.equal(masqueradeMark(0), '0x00000001');
  assert.equal(masqueradeMark(31), '0x80000000');
  assert.throws(() => masqueradeMark(32));
});

test('jump rules and canary: upstream\'s iptablesJumpChains and Monitor tables', () => {
  assert.equal(JUMP_RULES.length, 12);
  assert.deepEqual(JUMP_RULES.map((j) => `${j.table}/${j.chain}->${j.target}`), [
    'filter/INPUT->KUBE-EXTERNAL-SERVICES', 'filter/FORWARD->KUBE-EXTERNAL-SERVICES', 'filter/INPUT->KUBE-NODEPORTS',
    'filter/FORWARD->KUBE-SERVICES', 'filter/OUTPUT->KUBE-SERVICES', 'filter/FORWARD->KUBE-FORWARD',
    'filter/INPUT->KUBE-PROXY-FIREWALL', 'filter/OUTPUT->KUBE-PROXY-FIREWALL', 'filter/FORWARD->KUBE-PROXY-FIREWALL',
    'nat/OUTPUT->KUBE-SERVICES', 'nat/PREROUTING->KUBE-SERVICES', 'nat/POSTROUTING->KUBE-POSTROUTING',
  ]);
  assert.deepEqual(JUMP_RULES[0]?.args, ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes externally-visible service portals', '-j', 'KUBE-EXTERNAL-SERVICES']);
  assert.deepEqual(JUMP_RULES[11]?.args, ['-m', 'comment', '--comment', 'kubernetes postrouting rules', '-j', 'KUBE-POSTROUTING']);
  assert.deepEqual(KUBELET_JUMP_RULES.map((j) => j.args), [['-j', 'KUBE-FIREWALL'], ['-j', 'KUBE-FIREWALL']]);
  assert.equal(CANARY_CHAIN, 'KUBE-PROXY-CANARY');
  assert.deepEqual([...CANARY_TABLES], ['mangle', 'nat', 'filter']);
  const snap = snapshot([]);
  assert.equal(jumpRulesFor(renderIptables(snap, OPTS)).length, 12);
  assert.equal(jumpRulesFor(renderIptables(snap, UPSTREAM_FAKE_OPTS)).length, 14);
});

test('render is deterministic: same input (in any order) → same text, and the input is not mutated', () => {
  const objs = [
    svc('ns1', 'a', { clusterIP: '172.30.0.1', ports: [port('p', 80), port('q', 81, 'UDP')] }),
    svc('ns1', 'b', { type: 'LoadBalancer', clusterIP: '172.30.0.2', ports: [port('p', 80, 'TCP', 30001)], loadBalancerIPs: ['1.2.3.4'], loadBalancerSourceRanges: ['203.0.113.0/25'], sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 30 }),
    slice('ns1', 'a-1', 'a', [ep('10.0.0.1'), ep('10.0.0.2')], { portName: 'p', port: 80 }),
    slice('ns1', 'b-1', 'b', [ep('10.0.0.3'), ep('10.0.0.4', { nodeName: 'test-node' })], { portName: 'p', port: 80 }),
  ];
  const snap = snapshot(objs);
  const frozen = JSON.stringify([...snap.servicePorts, ...snap.endpoints]);
  const one = serializeFull(renderIptables(snap, OPTS)).text;
  const two = serializeFull(renderIptables(snap, OPTS)).text;
  assert.equal(one, two);
  assert.equal(serializeFull(renderIptables(snapshot([...objs].reverse()), OPTS)).text, one);
  assert.equal(JSON.stringify([...snap.servicePorts, ...snap.endpoints]), frozen);
});

test('render, serialize, names, hash and the address helpers they use are pure: no node: imports, clock or randomness', () => {
  const dir = fileURLToPath(new URL('../../../../src/', import.meta.url));
  for (const f of ['backends/iptables/render.ts', 'backends/iptables/serialize.ts', 'backends/iptables/names.ts', 'backends/iptables/hash.ts', 'backends/iptables/model.ts', 'core/ip.ts']) {
    assert.ok(existsSync(dir + f), f);
    const src = readFileSync(dir + f, 'utf8');
    assert.doesNotMatch(src, /from '(node:|fs|os|child_process|crypto)/, f);
    assert.doesNotMatch(src, /Date\.|new Date|Math\.random|performance\.|process\./, f);
  }
});
