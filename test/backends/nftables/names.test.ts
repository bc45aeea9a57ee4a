/** nftables names, checked against names in upstream's pkg/proxy/nftables/proxier_test.go. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namespacedName, servicePortName } from '../../../src/core/ids.js';
import {
  endpointNames, hashAndTruncate, isAffinitySetName, isServiceChainName, serviceChainNames, servicePortOfName, spellsServicePort,
} from '../../../src/backends/nftables/names.js';

const spn = (ns: string, name: string, port: string) => servicePortName(namespacedName(ns, name), port);

test('service chain names match upstream', () => {
  const cases: [string, string, string, string][] = [
    ['ns1', 'svc1', 'TCP', 'service-ULMVA6XW-ns1/svc1/tcp/p80'],
    ['ns3', 'svc3', 'tcp', 'service-4AT6LBPK-ns3/svc3/tcp/p80'],
    ['ns4', 'svc4', 'tcp', 'service-LAUZTJTB-ns4/svc4/tcp/p80'],
    ['ns5', 'svc5', 'tcp', 'service-HVFWP5L3-ns5/svc5/tcp/p80'],
  ];
  for (const [ns, name, proto, want] of cases) assert.equal(serviceChainNames(spn(ns, name, 'p80'), proto).cluster, want);
  const n = serviceChainNames(spn('ns5', 'svc5', 'p80'), 'tcp');
  assert.equal(n.external, 'external-HVFWP5L3-ns5/svc5/tcp/p80');
  assert.equal(n.firewall, 'firewall-HVFWP5L3-ns5/svc5/tcp/p80');
  assert.equal(n.local, 'local-HVFWP5L3-ns5/svc5/tcp/p80');
});

test('endpoint chain and affinity set names match upstream', () => {
  const cases: [string, string, string, string][] = [
    ['ns1', 'svc1', '10.180.0.1:80', 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'],
    ['ns3', 'svc3', '10.180.0.3:80', 'endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80'],
    ['ns4', 'svc4', '10.180.0.4:80', 'endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80'],
    ['ns4', 'svc4', '10.180.0.5:80', 'endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80'],
    ['ns5', 'svc5', '10.180.0.3:80', 'endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80'],
    // IPv6: colons become dots.
    ['ns1', 'svc1', '[fd00:10:180::1]:80', 'endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80'],
  ];
  for (const [ns, name, e, want] of cases) assert.equal(endpointNames(spn(ns, name, 'p80'), 'TCP', e).chain, want);
  assert.equal(endpointNames(spn('ns5', 'svc5', 'p80'), 'tcp', '10.180.0.3:80').affinitySet, 'affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80');
});

test('unnamed port, truncation, classifiers', () => {
  assert.match(serviceChainNames(spn('ns', 'svc', ''), 'udp').cluster, /^service-[A-Z2-7]{8}-ns\/svc\/udp\/$/);
  const long = hashAndTruncate('x'.repeat(300));
  assert.equal(long.length, 240);
  assert.ok(long.endsWith('...'));
  assert.ok(isServiceChainName('service-ULMVA6XW-ns1/svc1/tcp/p80'));
  assert.ok(!isServiceChainName('services'));
  assert.ok(!isServiceChainName('reject-chain'));
  assert.ok(isAffinitySetName('affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80'));
  assert.ok(!isAffinitySetName('cluster-ips'));
});

test('servicePortOfName: the service port a per-port name spells out; nothing for other names', () => {
  const svc1 = spn('ns1', 'svc1', 'p80');
  const names = serviceChainNames(svc1, 'TCP');
  for (const n of [names.cluster, names.local, names.external, names.firewall]) assert.equal(servicePortOfName(n), svc1, n);
  const ep = endpointNames(svc1, 'TCP', '10.180.0.1:80');
  assert.equal(servicePortOfName(ep.chain), svc1);
  assert.equal(servicePortOfName(ep.affinitySet), svc1);
  const unnamed = spn('ns', 'svc', '');
  assert.equal(servicePortOfName(endpointNames(unnamed, 'udp', '[fd00::1]:53').chain), unnamed);
  for (const fixed of ['services', 'reject-chain', 'cluster-ips', 'service-ips', 'filter-output-post-dnat']) assert.equal(servicePortOfName(fixed), undefined, fixed);
  // A name cut short keeps no port that could be told apart.
  const cut = `service-${hashAndTruncate(`${'n'.repeat(120)}/${'s'.repeat(120)}/tcp/p80`)}`;
  assert.ok(cut.endsWith('...'));
  assert.notEqual(servicePortOfName(cut), spn('n'.repeat(120), 's'.repeat(120), 'p80'));
});

test('spellsServicePort: when it says so, every chain and affinity set name of the port gives the port back', () => {
  // The longest names it accepts: 226 characters of ns/svc/proto/port with sctp.
  const edge = 226 - '///sctp'.length;
  const cases: [string, string, string, boolean][] = [
    ['ns1', 'svc1', 'p80', true],
    ['ns', 'svc', '', true],
    ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(15), true],
    ['n'.repeat(edge - 2), 's', 'p', true],
    ['n'.repeat(edge - 1), 's', 'p', false],
    ['ns', 'svc', 'p_1', false],
    ['ns', 'svc', 'a/b', false],
  ];
  for (const [ns, name, port, want] of cases) {
    const s = spn(ns, name, port);
    assert.equal(spellsServicePort(s), want, `${ns.length}/${name}/${port}`);
    if (!want) continue;
    for (const proto of ['TCP', 'UDP', 'SCTP']) {
      const chains = serviceChainNames(s, proto);
      const names = [chains.cluster, chains.local, chains.external, chains.firewall];
      for (const e of ['10.180.0.1:80', '[fd00:10:180::1]:8080', '255.255.255.255:65535']) {
        const ep = endpointNames(s, proto, e);
        names.push(ep.chain, ep.affinitySet);
      }
      for (const n of names) assert.equal(servicePortOfName(n), s, n);
    }
  }
  // Over the limit, a name is cut inside the port's text and spells out another port.
  const over = spn('n'.repeat(edge + 20), 's', 'p');
  assert.notEqual(servicePortOfName(endpointNames(over, 'TCP', '10.180.0.1:80').chain), over);
});
