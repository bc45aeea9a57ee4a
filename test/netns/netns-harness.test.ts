/**
 * Proves the network-namespace harness (src/platform/netns.ts) with real namespaces, veths
 * and sockets, and proves that a whole run leaves the root namespace exactly as it was.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import {
  assertTestAddress, cleanupStaleNetns, createNetns, kernelTestGate, kernelTestPolicy, linkNetns, listNetns, runHost, type Netns,
} from '../../src/platform/netns.js';
import type { Exec } from '../../src/platform/exec.js';
import { Iptables } from '../../src/platform/iptables.js';
import { pollUntil, rootNetworkState } from '../helpers/netns-util.js';

const PREFIX = 'harness';

/** A bounded node one-liner: a TCP server that answers `<tag> <local>:<port> <- <remote>` and a UDP echo. */
const SERVER = `
const net = require('net'), dgram = require('dgram');
const [ip, port, tag] = process.argv.slice(1);
const srv = net.createServer((s) => s.end(tag + ' ' + s.localAddress + ':' + s.localPort + ' <- ' + s.remoteAddress + '\\n'));
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => u.send('echo ' + m, r.port, r.address));
setTimeout(() => process.exit(0), 60000);
srv.listen(Number(port), ip, () => u.bind(Number(port), ip, () => console.log('listening')));
`;

/** A bounded node one-liner: connects over TCP, prints the reply; sends one datagram, prints the echo. */
const CLIENT = `
const net = require('net'), dgram = require('dgram');
const [ip, port] = process.argv.slice(1);
setTimeout(() => { console.log('TIMEOUT'); process.exit(3); }, 3000);
const s = net.connect(Number(port), ip);
let buf = '';
s.on('data', (d) => buf += d);
s.on('error', (e) => { console.log('ERROR ' + e.code); process.exit(2); });
s.on('close', () => {
  const u = dgram.createSocket('udp4');
  u.on('message', (m, r) => { console.log(JSON.stringify({ tcp: buf.trim(), udp: String(m), from: r.address + ':' + r.port })); process.exit(0); });
  u.send('hello', Number(port), ip);
});
`;

async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => c.once('exit', r));
  return c.pid ?? 999_999_999;
}

test('netns harness: namespaces, veth links, processes, cleanup; the root namespace is untouched', { timeout: 90_000 }, async (t) => {
  if (!(await kernelTestGate(t))) return;
  await cleanupStaleNetns(PREFIX);
  const rootBefore = await rootNetworkState();
  const made: Netns[] = [];
  const make = async (): Promise<Netns> => {
    const ns = await createNetns(PREFIX);
    made.push(ns);
    return ns;
  };

  try {
    await t.test('createNetns: unique kp-<prefix>-<pid>-<n> names, listed, lo up, nothing else inside', async () => {
      const a = await make();
      const b = await make();
      assert.match(a.name, new RegExp(`^kp-${PREFIX}-${process.pid}-\\d+$`));
      assert.notEqual(a.name, b.name);
      const names = await listNetns();
      assert.ok(names.includes(a.name) && names.includes(b.name), names.join(' '));
      const links = await a.execOk('ip', ['-o', 'link', 'show']);
      assert.match(links.stdout, /^1: lo: <LOOPBACK,UP,LOWER_UP>/m);
      assert.equal(links.stdout.trim().split('\n').length, 1, links.stdout);
      assert.equal((await a.execOk('ip', ['-4', 'route', 'show'])).stdout.trim(), '');
      // A fresh namespace has its own, empty, netfilter.
      assert.equal((await a.execOk('iptables-save', [])).stdout.split('\n').filter((l) => l.startsWith('-A')).length, 0);
    });

    await t.test('exec never rejects, execOk rejects with the command and stderr, timeouts are bounded', async () => {
      const a = await make();
      const ok = await a.exec('sh', ['-c', 'echo out; echo err >&2; exit 3']);
      assert.deepEqual(ok, { code: 3, stdout: 'out\n', stderr: 'err\n' });
      const input = await a.exec('cat', [], { input: 'fed through stdin' });
      assert.equal(input.stdout, 'fed through stdin');
      const missing = await a.exec('kp-no-such-command', []);
      assert.notEqual(missing.code, 0);
      await assert.rejects(a.execOk('sh', ['-c', 'echo boom >&2; exit 1']), /sh -c .* failed \(exit 1\): boom/);
      const started = Date.now();
      const slow = await a.exec('sleep', ['30'], { timeoutMs: 300 });
      assert.equal(slow.code, 124);
      assert.ok(Date.now() - started < 5000, 'the timeout killed the command');
    });

    await t.test('linkNetns: a veth pair between two namespaces carries TCP and UDP both ways', async () => {
      const a = await make();
      const b = await make();
      const link = await linkNetns(a, b, { aCidr: '198.18.2.1/24', bCidr: '198.18.2.2/24' });
      assert.equal(link.a.ip, '198.18.2.1');
      assert.equal(link.b.ip, '198.18.2.2');
      assert.match((await a.execOk('ip', ['-o', 'addr', 'show', 'dev', link.a.ifname])).stdout, /inet 198\.18\.2\.1\/24/);
      assert.match((await b.execOk('ip', ['-o', 'addr', 'show', 'dev', link.b.ifname])).stdout, /inet 198\.18\.2\.2\/24/);
      const server = b.spawn(process.execPath, ['-e', SERVER, '198.18.2.2', '7000', 'server-b']);
      await server.waitForOutput('listening', 10_000);
      const r = await a.execOk(process.execPath, ['-e', CLIENT, '198.18.2.2', '7000'], { timeoutMs: 10_000 });
      assert.deepEqual(JSON.parse(r.stdout), { tcp: 'server-b 198.18.2.2:7000 <- 198.18.2.1', udp: 'echo hello', from: '198.18.2.2:7000' });
      // The other way round.
      const server2 = a.spawn(process.execPath, ['-e', SERVER, '198.18.2.1', '7001', 'server-a']);
      await server2.waitForOutput('listening', 10_000);
      const r2 = await b.execOk(process.execPath, ['-e', CLIENT, '198.18.2.1', '7001'], { timeoutMs: 10_000 });
      assert.equal((JSON.parse(r2.stdout) as { tcp: string }).tcp, 'server-a 198.18.2.1:7001 <- 198.18.2.2');
      // Each namespace sees only its own end of the link.
      assert.doesNotMatch((await a.execOk('ip', ['-o', 'link'])).stdout, new RegExp(`\\b${link.b.ifname}\\b`));
    });

    await t.test('addRoute and sysctl: a router namespace forwards between two others', async () => {
      const left = await make();
      const router = await make();
      const right = await make();
      await linkNetns(left, router, { aCidr: '198.18.3.2/24', bCidr: '198.18.3.1/24' });
      await linkNetns(router, right, { aCidr: '198.18.4.1/24', bCidr: '198.18.4.2/24' });
      await left.addRoute('198.18.4.0/24', { via: '198.18.3.1' });
      await right.addRoute('198.18.3.0/24', { via: '198.18.4.1' });
      await router.sysctl('net.ipv4.ip_forward', '1');
      assert.equal((await router.execOk('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1');
      const server = right.spawn(process.execPath, ['-e', SERVER, '198.18.4.2', '7002', 'right']);
      await server.waitForOutput('listening', 10_000);
      const r = await left.execOk(process.execPath, ['-e', CLIENT, '198.18.4.2', '7002'], { timeoutMs: 10_000 });
      assert.equal((JSON.parse(r.stdout) as { tcp: string }).tcp, 'right 198.18.4.2:7002 <- 198.18.3.2');
      await assert.rejects(router.sysctl('kernel.panic', '0'), /only net\.\* sysctls/);
    });

    await t.test('the harness refuses addresses outside 198.18.0.0/15', async () => {
      for (const bad of ['10.0.0.1/24', '172.16.0.1/24', '192.168.1.1/24', '8.8.8.8/32', '198.20.0.1/24', '198.18.0.0/14', 'nonsense']) {
        assert.throws(() => assertTestAddress(bad), /outside 198\.18\.0\.0\/15/, bad);
      }
      for (const good of ['198.18.0.1/24', '198.19.255.254/32', '198.18.100.10', '198.18.0.0/15']) assertTestAddress(good);
      const a = await make();
      const b = await make();
      await assert.rejects(linkNetns(a, b, { aCidr: '10.1.1.1/24', bCidr: '10.1.1.2/24' }), /outside/);
      await assert.rejects(a.addRoute('0.0.0.0/0', { via: '198.18.5.1' }), /outside/);
      assert.equal((await a.execOk('ip', ['-o', 'link'])).stdout.trim().split('\n').length, 1, 'no link was created');
    });

    await t.test('spawn tracks children; destroy kills them by pid, deletes the namespace, and is idempotent', async () => {
      const a = await make();
      const child = a.spawn('sleep', ['60']);
      // A process inside the namespace that the harness did not start (it must die too).
      const untracked = spawn('ip', ['netns', 'exec', a.name, 'sleep', '60'], { stdio: 'ignore' });
      const untrackedExit = new Promise<NodeJS.Signals | null>((r) => untracked.once('exit', (_c, sig) => r(sig)));
      const untrackedPid = untracked.pid ?? 0;
      await pollUntil('the untracked sleep to enter the namespace', async () =>
        (await runHost('ip', ['netns', 'pids', a.name])).stdout.split('\n').map(Number).includes(untrackedPid));
      assert.ok(child.running);
      const inside = (await runHost('ip', ['netns', 'pids', a.name])).stdout.split('\n').map(Number);
      assert.ok(inside.includes(child.pid), `${child.pid} is inside ${a.name}: ${inside.join(',')}`);
      assert.ok(inside.includes(untrackedPid), 'the backgrounded process is inside too');
      const started = Date.now();
      await a.destroy();
      assert.ok(Date.now() - started < 10_000);
      assert.equal(a.destroyed, true);
      assert.equal(child.running, false);
      assert.deepEqual(await child.exited, { code: null, signal: 'SIGKILL' });
      assert.equal(await untrackedExit, 'SIGKILL', 'processes left inside are killed too');
      assert.ok(!(await listNetns()).includes(a.name), 'ip netns list no longer shows it');
      await a.destroy(); // idempotent
      assert.equal((await a.exec('true', [])).code, 125);
      assert.throws(() => a.spawn('true', []), /destroyed/);
    });

    await t.test('stop(): SIGTERM first, SIGKILL after the bound', async () => {
      const a = await make();
      const polite = a.spawn('sleep', ['60']);
      assert.deepEqual(await polite.stop({ timeoutMs: 2000 }), { code: null, signal: 'SIGTERM' });
      const stubborn = a.spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); console.log('armed'); setTimeout(() => {}, 60000)"]);
      await stubborn.waitForOutput('armed', 10_000);
      const started = Date.now();
      assert.deepEqual(await stubborn.stop({ timeoutMs: 300 }), { code: null, signal: 'SIGKILL' });
      assert.ok(Date.now() - started < 3000);
      const quick = a.spawn('sh', ['-c', 'echo bye; exit 4']);
      await assert.rejects(quick.waitForOutput('never printed', 5000), /exited before printing/);
      assert.equal((await quick.exited).code, 4);
      assert.equal(quick.stdout(), 'bye\n');
    });

    await t.test('cleanupStaleNetns removes namespaces of dead runs only, killing what is left inside', async () => {
      const dead = await deadPid();
      const staleName = `kp-${PREFIX}-${dead}-1`;
      const aliveChild = spawn('sleep', ['60'], { stdio: 'ignore' });
      const aliveName = `kp-${PREFIX}-${aliveChild.pid ?? 0}-1`;
      const otherPrefix = `kp-${PREFIX}x-${dead}-1`;
      let stray: ReturnType<typeof spawn> | undefined;
      try {
        for (const n of [staleName, aliveName, otherPrefix]) assert.equal((await runHost('ip', ['netns', 'add', n])).code, 0);
        // A process left behind inside the stale namespace by the "crashed" run.
        stray = spawn('ip', ['netns', 'exec', staleName, 'sleep', '60'], { stdio: 'ignore' });
        const strayPid = stray.pid ?? 0;
        const strayExit = new Promise<NodeJS.Signals | null>((r) => stray?.once('exit', (_c, sig) => r(sig)));
        await pollUntil('the stray sleep to enter the namespace', async () =>
          (await runHost('ip', ['netns', 'pids', staleName])).stdout.split('\n').map(Number).includes(strayPid));
        const live = await make();
        const removed = await cleanupStaleNetns(PREFIX);
        assert.deepEqual(removed, [staleName]);
        const names = await listNetns();
        assert.ok(!names.includes(staleName));
        assert.ok(names.includes(aliveName), 'a namespace of a live process (a parallel run) stays');
        assert.ok(names.includes(otherPrefix), 'another prefix is not ours to clean');
        assert.ok(names.includes(live.name), 'this process\'s own live namespaces stay');
        assert.equal(await strayExit, 'SIGKILL', 'the process left inside was killed');
      } finally {
        aliveChild.kill('SIGKILL');
        stray?.kill('SIGKILL');
        for (const n of [staleName, aliveName, otherPrefix]) await runHost('ip', ['netns', 'del', n]);
      }
    });

    await t.test('ns.exec is an Exec: the shared iptables driver programs the namespace, not the host', async () => {
      const a = await make();
      const exec: Exec = a.exec;
      const ipt = new Iptables({ exec });
      await ipt.restore('*nat\n:KP-HARNESS - [0:0]\n-A KP-HARNESS -d 198.18.5.5/32 -p tcp -j RETURN\nCOMMIT\n');
      await ipt.ensureJump('nat', 'OUTPUT', 'KP-HARNESS', 'harness jump');
      await ipt.ensureJump('nat', 'OUTPUT', 'KP-HARNESS', 'harness jump');
      const saved = await ipt.save('nat');
      assert.match(saved, /^-A OUTPUT -m comment --comment "harness jump" -j KP-HARNESS$/m);
      assert.equal(saved.split('\n').filter((l) => l.includes('-j KP-HARNESS')).length, 1, 'ensureJump is idempotent');
      assert.doesNotMatch((await runHost('iptables-save', [])).stdout, /KP-HARNESS/, 'the host has none of it');
      await ipt.deleteJump('nat', 'OUTPUT', 'KP-HARNESS', 'harness jump');
      assert.deepEqual(await ipt.deleteChains('nat', ['KP-HARNESS', 'KP-ABSENT']), ['KP-HARNESS']);
      assert.doesNotMatch(await ipt.save('nat'), /KP-HARNESS/);
    });

    await t.test('kernel-test policy: skip only when not root and CI is not "true"', () => {
      const no = { ok: false as const, reason: 'no netns' };
      assert.deepEqual(kernelTestPolicy({ root: true, ci: undefined, availability: { ok: true } }), { run: true });
      assert.deepEqual(kernelTestPolicy({ root: false, ci: undefined, availability: no }), { run: false, skip: true, reason: 'no netns' });
      assert.deepEqual(kernelTestPolicy({ root: false, ci: 'false', availability: no }), { run: false, skip: true, reason: 'no netns' });
      assert.deepEqual(kernelTestPolicy({ root: false, ci: 'true', availability: no }), { run: false, skip: false, reason: 'no netns' });
      assert.deepEqual(kernelTestPolicy({ root: true, ci: undefined, availability: no }), { run: false, skip: false, reason: 'no netns' });
    });
  } finally {
    await Promise.all(made.map((ns) => ns.destroy()));
  }

  await t.test('every namespace this file created is gone and the root namespace is unchanged', async () => {
    const names = await listNetns();
    for (const ns of made) assert.ok(!names.includes(ns.name), ns.name);
    assert.deepEqual(await rootNetworkState(), rootBefore);
  });
});
