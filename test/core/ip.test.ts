import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIP, isLoopback, parseCIDR, parseIPv4, parseIPv6 } from '../../src/core/ip.js';

test('parseIPv4 accepts dotted quads and rejects everything else', () => {
  const cases: [string, number | undefined][] = [
    ['198.18.0.1', 0xc6120001], ['0.0.0.0', 0], ['255.255.255.255', 0xffffffff],
    ['256.1.1.1', undefined], ['1.2.3', undefined], ['01.2.3.4', undefined], ['1.2.3.4 ', undefined], ['a.b.c.d', undefined],
  ];
  for (const [s, want] of cases) assert.equal(parseIPv4(s), want, s);
});

test('parseIPv6 expands ::, embedded IPv4, and rejects malformed text', () => {
  assert.deepEqual(parseIPv6('::1'), [0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(parseIPv6('fd00::10:1'), [0xfd00, 0, 0, 0, 0, 0, 0x10, 1]);
  assert.deepEqual(parseIPv6('::ffff:198.18.0.1'), [0, 0, 0, 0, 0, 0xffff, 0xc612, 1]);
  assert.deepEqual(parseIPv6('1:2:3:4:5:6:7:8'), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (const bad of ['1::2::3', '1:2:3:4:5:6:7:8:9', 'fe80::1%eth0', '12345::', ':::']) assert.equal(parseIPv6(bad), undefined, bad);
});

test('parseCIDR contains the right addresses', () => {
  const c = parseCIDR('198.18.0.0/15');
  assert.ok(c);
  assert.ok(c.contains('198.19.255.255'));
  assert.ok(!c.contains('198.20.0.0'));
  const v6 = parseCIDR('fd00:10::/32');
  assert.ok(v6?.contains('fd00:10:ffff::1'));
  assert.ok(!v6?.contains('fd00:11::1'));
  assert.equal(parseCIDR('198.18.0.0/33'), undefined);
  assert.equal(parseCIDR('198.18.0.0'), undefined);
});

test('isLoopback covers 127/8 and ::1 only', () => {
  assert.ok(isLoopback('127.0.10.1'));
  assert.ok(isLoopback('::1'));
  assert.ok(!isLoopback('198.18.0.1'));
  assert.ok(!isLoopback('::2'));
});

test('canonical spellings are Go\'s: networks masked, IPv6 compressed (RFC 5952), IPv4-mapped is IPv4', () => {
  assert.equal(parseCIDR('203.0.113.5/25')?.cidr, '203.0.113.0/25');
  assert.equal(parseCIDR('FD00:0:0:0:0:0:0:1/64')?.cidr, 'fd00::/64');
  assert.equal(parseCIDR('2001:db8:0:0:1:0:0:1/128')?.cidr, '2001:db8::1:0:0:1/128');
  assert.deepEqual(canonicalIP(' 198.18.0.1 '), { ip: '198.18.0.1', family: 'IPv4' });
  assert.deepEqual(canonicalIP('::ffff:198.18.0.1'), { ip: '198.18.0.1', family: 'IPv4' });
  assert.deepEqual(canonicalIP('fd00:0:0::0:1'), { ip: 'fd00::1', family: 'IPv6' });
  assert.deepEqual(canonicalIP('1:0:1:0:1:0:1:0'), { ip: '1:0:1:0:1:0:1:0', family: 'IPv6' });
  assert.equal(canonicalIP('198.18.0'), undefined);
});
