import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderPortals } from '../../../src/backends/userspace/rules.js';
import { Iptables, restoreContext } from '../../../src/platform/iptables.js';
import { FakeExec } from '../../../src/platform/exec.js';
import { assertGolden } from '../../helpers/golden.js';

test('portal rules: canonical order, one REDIRECT per address in each chain (golden)', () => {
  const text = renderPortals([
    { servicePort: 'ns2/dns:dns', ip: '198.18.100.11', port: 53, protocol: 'UDP', proxyPort: 40002 },
    { servicePort: 'ns1/web:http', ip: '198.18.100.20', port: 80, protocol: 'TCP', proxyPort: 40001 },
    { servicePort: 'ns1/web:http', ip: '198.18.100.10', port: 80, protocol: 'TCP', proxyPort: 40001 },
  ]);
  assertGolden('userspace/portals.txt', text);
  assert.equal(renderPortals([]), '*nat\n:KUBE-PORTALS-CONTAINER - [0:0]\n:KUBE-PORTALS-HOST - [0:0]\nCOMMIT\n');
});

test('iptables driver: a failed restore names the failing line with context', async () => {
  const fake = new FakeExec();
  fake.respond((c) => c.cmd === 'iptables-restore', { code: 2, stderr: 'iptables-restore: line 3 failed\n' });
  const ipt = new Iptables({ exec: fake.exec });
  await assert.rejects(ipt.restore('*nat\n:A - [0:0]\n-A A -j BOGUS\nCOMMIT\n'), (err: Error) => {
    assert.match(err.message, /iptables-restore failed \(exit 2\): iptables-restore: line 3 failed/);
    assert.match(err.message, /> 3: -A A -j BOGUS/);
    return true;
  });
  assert.deepEqual(fake.calls[0]?.args, ['-w', '5', '--noflush']);
  assert.equal(restoreContext('a\nb', 'no line info'), '');
});

test('iptables driver: ensureJump adds only when the check fails; deleteChains removes only existing chains', async () => {
  const fake = new FakeExec();
  let present = false;
  fake.respond((c) => c.cmd === 'iptables' && c.args.includes('-C') && !present, { code: 1 });
  const ipt = new Iptables({ exec: fake.exec });
  await ipt.ensureJump('nat', 'PREROUTING', 'KUBE-PORTALS-CONTAINER', 'c');
  present = true;
  await ipt.ensureJump('nat', 'PREROUTING', 'KUBE-PORTALS-CONTAINER', 'c');
  const inserts = fake.calls.filter((c) => c.args.includes('-I'));
  assert.equal(inserts.length, 1);
  assert.deepEqual(inserts[0]?.args, ['-w', '5', '-t', 'nat', '-I', 'PREROUTING', '-m', 'comment', '--comment', 'c', '-j', 'KUBE-PORTALS-CONTAINER']);

  const f2 = new FakeExec();
  f2.respond((c) => c.cmd === 'iptables-save', { stdout: '*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-PORTALS-HOST - [0:0]\nCOMMIT\n' });
  const removed = await new Iptables({ exec: f2.exec }).deleteChains('nat', ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST']);
  assert.deepEqual(removed, ['KUBE-PORTALS-HOST']);
  assert.equal(f2.calls[1]?.input, '*nat\n:KUBE-PORTALS-HOST - [0:0]\n-X KUBE-PORTALS-HOST\nCOMMIT\n');
});
