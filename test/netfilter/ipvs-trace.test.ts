/**
 * The tracer in IPVS mode: a kproxy --dry-run file (or ipvsadm -Sn/-Ln and ipset save dumps)
 * traced through the hooks, the ipset matches, the IPVS lookup, the scheduler's choice with the
 * state it used, and the masquerade. Goldens under test/golden/trace/ipvs-*.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderIpvs } from '../../src/backends/ipvs/render.js';
import { serializeDryRun } from '../../src/backends/ipvs/serialize.js';
import { traceCommand } from '../../src/netfilter/trace-cli.js';
import { FakeExec } from '../../src/platform/exec.js';
import { assertGolden } from '../helpers/golden.js';
import { ep, slice, svc } from '../helpers/objects.js';
import { snapshot } from '../helpers/upstream-world.js';

const NODE_IP = '198.18.200.1';
const world = [
  svc('ns1', 'web', { type: 'NodePort', clusterIP: '198.18.100.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] }),
  slice('ns1', 'web-1', 'web', [ep('198.18.10.2', { nodeName: 'node1' }), ep('198.18.10.3', { nodeName: 'node1' }), ep('198.18.20.2', { nodeName: 'node2' })], { portName: 'http', port: 8080 }),
  svc('ns1', 'weighted', { clusterIP: '198.18.100.20', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }], annotations: { 'kproxy.io/scheduler': 'wrr' } }),
  slice('ns1', 'weighted-1', 'weighted', [ep('198.18.10.2'), ep('198.18.10.3')], { portName: 'http', port: 8080, annotations: { 'kproxy.io/weights': '{"198.18.10.2": 3, "198.18.10.3": 1}' } }),
  svc('ns1', 'empty', { clusterIP: '198.18.100.30', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }] }),
];
const dryRun = serializeDryRun(renderIpvs(snapshot(world, 'node1'), {
  nodeName: 'node1', nodeIPs: [NODE_IP], nodePortAddresses: [], clusterCIDRs: ['198.18.0.0/19'], masqueradeAll: false, masqueradeBit: 14, family: 'IPv4', scheduler: 'rr',
}));

const LIST = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.100.10:80 lc
  -> 198.18.20.2:8080             Masq    1      0          0
  -> 198.18.10.3:8080             Masq    1      4          0
  -> 198.18.10.2:8080             Masq    1      2          1
`;

async function run(argv: string[], files: Record<string, string> = { 'dry.txt': dryRun }, exec = new FakeExec()) {
  let out = '';
  let err = '';
  const code = await traceCommand(argv, {
    exec: exec.exec, stdout: (s) => { out += s; }, stderr: (s) => { err += s; },
    readFile: (p) => (files[p] !== undefined ? Promise.resolve(files[p] ?? '') : Promise.reject(new Error(`ENOENT: ${p}`))),
  });
  return { code, out, err, exec };
}

interface J { evaluators: string[]; notes: string[]; choices: { ip: string; port: number; probability: number; masquerade: boolean; verdict: string; delivery: string }[]; outcomes: { verdict: string; rejectWith?: string }[] }

test('NodePort from outside: KUBE-NODE-PORT-TCP marks, IPVS rr spreads over the three endpoints, masqueraded, sent on', async () => {
  const r = await run(['--from', 'dry.txt', '--src', '198.18.200.2', '--dst', NODE_IP, '--dport', '30080', '--node-ip', NODE_IP, '--in-interface', 'eth0']);
  assert.equal(r.code, 0, r.err);
  assertGolden('trace/ipvs-nodeport.txt', r.out);
  const j = JSON.parse((await run(['--from', 'dry.txt', '--src', '198.18.200.2', '--dst', NODE_IP, '--dport', '30080', '--node-ip', NODE_IP, '--in-interface', 'eth0', '--json'])).out) as J;
  assert.ok(j.evaluators.includes('ipvs'));
  assert.deepEqual(j.choices.map((c) => [c.ip, c.port, c.masquerade, c.delivery, c.verdict]).sort(), [
    ['198.18.10.2', 8080, true, 'forwarded', 'ACCEPT'], ['198.18.10.3', 8080, true, 'forwarded', 'ACCEPT'], ['198.18.20.2', 8080, true, 'forwarded', 'ACCEPT'],
  ]);
  for (const c of j.choices) assert.ok(Math.abs(c.probability - 1 / 3) < 1e-6);
  assert.match(r.out, /match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ\n\s+#1 -A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000/);
  assert.match(r.out, /IPVS rr: the next connection goes to 198\.18\.(10\.[23]|20\.2):8080; of the next 60 new connections from 198\.18\.200\.2: /);
});

test('ClusterIP from a pod: not masqueraded (in the cluster CIDR); hairpin to itself is (KUBE-LOOP-BACK)', async () => {
  const j = JSON.parse((await run(['--from', 'dry.txt', '--src', '198.18.20.2', '--dst', '198.18.100.10', '--dport', '80', '--node-ip', NODE_IP, '--in-interface', 'br0', '--json'])).out) as J;
  assert.equal(j.choices.length, 3);
  for (const c of j.choices) assert.equal(c.masquerade, false, c.ip);
  const self = await run(['--from', 'dry.txt', '--src', '198.18.10.2', '--dst', '198.18.100.10', '--dport', '80', '--node-ip', NODE_IP, '--in-interface', 'br0', '--json']);
  const hj = JSON.parse(self.out) as J;
  assert.deepEqual(hj.choices.filter((c) => c.masquerade).map((c) => c.ip), ['198.18.10.2'], 'only the hairpin path is masqueraded');
  assert.ok(hj.notes.some((n) => n.includes('kube-ipvs0 addresses (KUBE-IPVS-IPS) counted as local')));
});

test('weights: wrr 3:1 gives 3/4 and 1/4, with the state shown', async () => {
  const r = await run(['--from', 'dry.txt', '--src', '198.18.20.2', '--dst', '198.18.100.20', '--dport', '80', '--node-ip', NODE_IP, '--in-interface', 'br0']);
  assertGolden('trace/ipvs-wrr-weights.txt', r.out);
  assert.match(r.out, /IPVS scheduler state \(kernel list order\): 198\.18\.10\.2:8080 weight 3 active 0 inactive 0; 198\.18\.10\.3:8080 weight 1 active 0 inactive 0/);
  const j = JSON.parse((await run(['--from', 'dry.txt', '--src', '198.18.20.2', '--dst', '198.18.100.20', '--dport', '80', '--node-ip', NODE_IP, '--in-interface', 'br0', '--json'])).out) as J;
  assert.deepEqual(j.choices.map((c) => [c.ip, Math.round(c.probability * 100) / 100]).sort(), [['198.18.10.2', 0.75], ['198.18.10.3', 0.25]]);
});

test('a virtual server without real servers: ICMP port unreachable from IPVS', async () => {
  const j = JSON.parse((await run(['--from', 'dry.txt', '--src', '198.18.20.2', '--dst', '198.18.100.30', '--dport', '80', '--node-ip', NODE_IP, '--in-interface', 'br0', '--json'])).out) as J;
  assert.deepEqual(j.outcomes.map((o) => [o.verdict, o.rejectWith]), [['REJECT', 'icmp-port-unreachable (IPVS: no destination)']]);
});

test('live namespace: ipvsadm -Sn/-Ln and ipset save are read; lc uses the connection counters', async () => {
  const sections = (h: string): string => dryRun.split(`${h}\n`)[1]?.split('\n# ')[0] ?? '';
  const exec = new FakeExec();
  exec.respond((c) => c.cmd === 'ipvsadm' && c.args.join(' ') === '-Sn', { stdout: '-A -t 198.18.100.10:80 -s lc\n-a -t 198.18.100.10:80 -r 198.18.20.2:8080 -m -w 1\n-a -t 198.18.100.10:80 -r 198.18.10.3:8080 -m -w 1\n-a -t 198.18.100.10:80 -r 198.18.10.2:8080 -m -w 1\n' });
  exec.respond((c) => c.cmd === 'ipvsadm' && c.args.join(' ') === '-Ln', { stdout: LIST });
  exec.respond((c) => c.cmd === 'ipset', { stdout: sections('# ipset -exist restore') });
  exec.respond((c) => c.cmd === 'iptables-save', { stdout: sections('# iptables-restore --noflush') + '\n' });
  exec.respond((c) => c.cmd === 'nft', { code: 1, stderr: 'nft: not found' });
  const r = await run(['--src', '198.18.20.2', '--dst', '198.18.100.10', '--dport', '80', '--node-ip', NODE_IP, '--in-interface', 'br0'], {}, exec);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /198\.18\.10\.3:8080 weight 1 active 4 inactive 0; 198\.18\.10\.2:8080 weight 1 active 2 inactive 1/);
  // lc: overhead = active*256 + inactive: 198.18.20.2 (0) first.
  assert.match(r.out, /IPVS lc: the next connection goes to 198\.18\.20\.2:8080/);
});

test('the tracer\'s IPVS jump list is the backend\'s', async () => {
  const { IPVS_KUBE_JUMPS } = await import('../../src/netfilter/kube-jumps.js');
  const { IPVS_JUMP_RULES } = await import('../../src/backends/ipvs/render.js');
  const q = (a: string): string => (a.includes(' ') ? `"${a}"` : a);
  assert.deepEqual(IPVS_KUBE_JUMPS.map((j) => [...j]), IPVS_JUMP_RULES.map((j) => [j.table, j.chain, j.args.map(q).join(' ')]));
});
