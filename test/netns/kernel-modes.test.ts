/**
 * One scenario table, run against every kernel mode: real packets through the rules kproxy
 * programs, in a namespace-only cluster (test/helpers/cluster.ts). kproxy (the real CLI) runs
 * in node1 and node2; pods greet with their name and the client address they see, so each
 * scenario checks both where a connection went and whether it was masqueraded.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupStaleNetns, kernelTestGate, type Netns, type NetnsProcess } from '../../src/platform/netns.js';
import { buildCluster, CLIENT_IP, CLUSTER_CIDR, DNS, EMPTY, HELD, LB_IP, NODE_IPS, POD_IPS, scenarioManifest as manifest, STICKY, WEB, type Cluster, type PodName } from '../helpers/cluster.js';
import { clientSession, KPROXY_BIN, pollUntil, rootNetworkState, runClient } from '../helpers/netns-util.js';

const ALL_MODES = ['iptables', 'nftables', 'ipvs'] as const;
type Mode = (typeof ALL_MODES)[number];

/**
 * Which modes run: KPROXY_KERNEL_MODES (comma-separated; the VM harness sets "ipvs"), else
 * iptables and nftables, plus ipvs when this kernel has IPVS (/proc/net/ip_vs).
 */
function modes(): readonly Mode[] {
  const env = process.env.KPROXY_KERNEL_MODES;
  if (env !== undefined && env.trim() !== '') {
    const list = env.split(',').map((m) => m.trim()).filter((m) => m !== '');
    const bad = list.filter((m) => !(ALL_MODES as readonly string[]).includes(m));
    if (bad.length > 0) throw new Error(`KPROXY_KERNEL_MODES: unknown mode ${bad.join(', ')} (known: ${ALL_MODES.join(', ')})`);
    return list as Mode[];
  }
  return existsSync('/proc/net/ip_vs') ? ALL_MODES : ['iptables', 'nftables'];
}
const MODES = modes();
/** Under the qemu VM (software emulation) node starts tens of times slower. */
const SLOW = process.env.KPROXY_IN_VM === '1' ? 10 : 1;

/** What each mode needs, how someone else breaks its rules, and what must be gone after --cleanup. */
const MODE_INFO: Record<Mode, { tools: string[]; flush: [string, string[]]; leftovers: (ns: Netns) => Promise<string[]>; tracer: boolean }> = {
  iptables: {
    tools: ['iptables', 'iptables-restore', 'conntrack'],
    flush: ['iptables', ['-w', '5', '-t', 'nat', '-F']],
    leftovers: async (ns) => (await ns.execOk('iptables-save', [])).stdout.split('\n').filter((l) => /KUBE-/.test(l)),
    tracer: true,
  },
  nftables: {
    tools: ['nft', 'conntrack'],
    flush: ['nft', ['flush', 'table', 'ip', 'kube-proxy']],
    leftovers: async (ns) => (await ns.execOk('nft', ['list', 'tables'])).stdout.split('\n').filter((l) => l.includes('kube-proxy')),
    tracer: true,
  },
  ipvs: {
    tools: ['ipvsadm', 'ipset', 'iptables', 'iptables-restore', 'conntrack'],
    // Someone clears every virtual server; the next sync (diffing against ipvsadm -Sn) repairs it.
    flush: ['ipvsadm', ['-C']],
    leftovers: async (ns) => {
      const vs = (await ns.execOk('ipvsadm', ['-Ln'])).stdout.split('\n').filter((l) => /^(TCP|UDP|SCTP|FWM)\s/.test(l) || /->\s/.test(l) && !/RemoteAddress/.test(l));
      const sets = (await ns.execOk('ipset', ['list', '-n'])).stdout.split('\n').filter((l) => l.startsWith('KUBE-'));
      const rules = (await ns.execOk('iptables-save', [])).stdout.split('\n').filter((l) => /KUBE-/.test(l));
      const link = (await ns.exec('ip', ['link', 'show', 'kube-ipvs0'])).code === 0 ? ['link kube-ipvs0'] : [];
      return [...vs, ...sets, ...rules, ...link];
    },
    tracer: true,
  },
};

/** "pod-a 198.18.10.1:40000" → { pod: 'pod-a', from: '198.18.10.1' } */
function parse(reply: string): { pod: string; from: string } {
  const [pod, addr] = reply.split(' ');
  return { pod: pod ?? '', from: (addr ?? '').replace(/:\d+$/, '') };
}

async function tcp(ns: Netns, ip: string, port: number, count: number, timeoutMs = 3000): Promise<{ pod: string; from: string }[]> {
  const r = await runClient<string>(ns, ['tcp', ip, String(port), String(count), String(timeoutMs)]);
  assert.ok(r.ok, `tcp ${ip}:${port} from ${ns.name}: ${r.error ?? ''}`);
  return r.replies.map(parse);
}

for (const mode of MODES) {
  test(`kernel mode ${mode}: the shared scenario table, with real packets`, { timeout: 300_000 * SLOW }, async (t) => {
    const info = MODE_INFO[mode];
    if (!(await kernelTestGate(t, { tools: info.tools }))) return;
    const prefix = `km-${mode}`;
    await cleanupStaleNetns(prefix);
    const rootBefore = await rootNetworkState();
    const dir = mkdtempSync(join(tmpdir(), 'kproxy-km-'));
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, manifest(['pod-a', 'pod-b', 'pod-c'], ['pod-a', 'pod-b']));
    let cluster: Cluster | undefined;
    try {
      cluster = await buildCluster(prefix);
      const c = cluster;
      const start = async (node: Netns, name: string): Promise<NetnsProcess> => {
        const p = node.spawn(process.execPath, [KPROXY_BIN, '--proxy-mode', mode, '--manifests', file, '--hostname-override', name,
          '--cluster-cidr', CLUSTER_CIDR, '--healthz-bind-address', '', '--metrics-bind-address', '',
          '--iptables-min-sync-period', '0s', '--iptables-sync-period', '2s', '-v', '2',
          // nf_conntrack_max is read-only outside the node's own namespace (kind sets the same).
          '--conntrack-max-per-core', '0', '--conntrack-tcp-timeout-close-wait', '1h1m']);
        await pollUntil(`kproxy ${mode} on ${name} to sync`, () => {
          if (!p.running) throw new Error(`kproxy exited: ${p.stderr().slice(-3000)}`);
          return /"synced proxy rules"/.test(p.stderr());
        }, { timeoutMs: 20_000 * SLOW, describeLast: () => p.stderr().slice(-3000) });
        return p;
      };
      const kp1 = await start(c.node1, 'node1');
      const kp2 = await start(c.node2, 'node2');
      // Upstream's conntrack setup ran inside the node's namespace: its timeouts are per namespace.
      const sysctlOf = async (key: string): Promise<string> => (await c.node1.execOk('sysctl', ['-n', key])).stdout.trim();
      assert.equal(await sysctlOf('net.netfilter.nf_conntrack_tcp_timeout_established'), '86400', 'the default 24h established timeout');
      assert.equal(await sysctlOf('net.netfilter.nf_conntrack_tcp_timeout_close_wait'), '3660', '--conntrack-tcp-timeout-close-wait 1h1m');
      const log = (): string => `node1 kproxy:\n${kp1.stderr().slice(-3000)}`;

      await t.test('ClusterIP from the node: every endpoint is reachable, no masquerade needed for pods', async () => {
        const got = await tcp(c.node1, WEB, 80, 30);
        assert.deepEqual(new Set(got.map((g) => g.pod)), new Set(['pod-a', 'pod-b', 'pod-c']), log());
      });

      await t.test('ClusterIP from a pod: the pod\'s own address is preserved (in-cluster traffic)', async () => {
        const got = await tcp(c.pods['pod-b'], WEB, 80, 30);
        for (const g of got) if (g.pod !== 'pod-b') assert.equal(g.from, POD_IPS['pod-b'], `to ${g.pod}`);
        assert.ok(got.some((g) => g.pod === 'pod-c'));
      });

      await t.test('hairpin: a pod reaching itself through its service works, masqueraded to the node', async () => {
        const got = await tcp(c.pods['pod-a'], WEB, 80, 30);
        const self = got.filter((g) => g.pod === 'pod-a');
        assert.ok(self.length > 0, 'pod-a chose itself at least once in 30 tries (p ≈ 1 - (2/3)^30)');
        for (const g of self) assert.equal(g.from, '198.18.10.1', 'hairpin traffic is SNATed to the bridge address');
      });

      await t.test('NodePort from the external client, Cluster policy: all endpoints, client masqueraded', async () => {
        const got = await tcp(c.client, NODE_IPS.node1, 30080, 30);
        assert.deepEqual(new Set(got.map((g) => g.pod)), new Set(['pod-a', 'pod-b', 'pod-c']));
        for (const g of got) assert.notEqual(g.from, CLIENT_IP, `${g.pod} must not see the client address under Cluster policy`);
      });

      await t.test('externalTrafficPolicy Local on two nodes: local endpoint only, client IP preserved', async () => {
        for (const [node, pod] of [[NODE_IPS.node1, 'pod-a'], [NODE_IPS.node2, 'pod-c']] as const) {
          const got = await tcp(c.client, node, 30081, 10);
          for (const g of got) {
            assert.equal(g.pod, pod, `via ${node} only the local endpoint`);
            assert.equal(g.from, CLIENT_IP, 'client address preserved');
          }
        }
      });

      await t.test('LoadBalancer IP: allowed source range gets through, other sources are dropped', async () => {
        const got = await tcp(c.client, LB_IP, 80, 6);
        for (const g of got) assert.match(g.pod, /^pod-[ab]$/);
        const denied = await runClient<string>(c.pods['pod-c'], ['tcp', LB_IP, '80', '1', '1000']);
        assert.equal(denied.ok, false, 'pod-c (not in loadBalancerSourceRanges) is dropped');
      });

      await t.test('ClientIP affinity sticks to one endpoint', async () => {
        const got = await tcp(c.pods['pod-b'], STICKY, 80, 15);
        assert.equal(new Set(got.map((g) => g.pod)).size, 1, JSON.stringify(got));
      });

      await t.test('a service without endpoints is refused at once', async () => {
        const t0 = Date.now();
        const r = await runClient<string>(c.pods['pod-b'], ['tcp', EMPTY, '80', '1', '3000']);
        assert.equal(r.ok, false);
        assert.match(r.error ?? '', /ECONNREFUSED/);
        // The client is a fresh node process: under the VM's emulation its start alone takes seconds.
        assert.ok(Date.now() - t0 < 1500 * SLOW, 'no timeout: REJECT answers immediately');
      });

      await t.test('UDP through the ClusterIP; replies come from the service address', async () => {
        const r = await runClient<{ text: string; address: string; port: number }>(c.pods['pod-c'], ['udp', DNS, '53', '10']);
        assert.ok(r.ok, r.error);
        for (const x of r.replies) {
          assert.match(x.text, /^pod-[ab]: ping \d+$/);
          assert.equal(`${x.address}:${x.port}`, `${DNS}:53`);
        }
      });

      if (info.tracer) await t.test('the tracer\'s predictions (endpoint set, masquerade, verdict) equal what the kernel did', async () => {
        interface Choice { ip: string; port: number; probability: number; verdict: string; masquerade: boolean }
        const trace = async (ns: Netns, args: string[]): Promise<Choice[]> => {
          const r = await ns.execOk(process.execPath, [KPROXY_BIN, 'trace', '--json', ...args], { timeoutMs: 30_000 * SLOW });
          return (JSON.parse(r.stdout) as { choices: Choice[] }).choices;
        };
        const podOf = (ip: string): string => Object.entries(POD_IPS).find(([, v]) => v === ip)?.[0] ?? ip;
        const cases: { name: string; ns: Netns; args: string[]; from: Netns; dst: string; port: number; src: string }[] = [
          { name: 'NodePort, Cluster policy', ns: c.node1, args: ['--src', CLIENT_IP, '--dst', NODE_IPS.node1, '--dport', '30080', '--in-interface', 'eth0'], from: c.client, dst: NODE_IPS.node1, port: 30080, src: CLIENT_IP },
          { name: 'NodePort, Local policy', ns: c.node1, args: ['--src', CLIENT_IP, '--dst', NODE_IPS.node1, '--dport', '30081', '--in-interface', 'eth0'], from: c.client, dst: NODE_IPS.node1, port: 30081, src: CLIENT_IP },
          { name: 'hairpin ClusterIP from pod-a', ns: c.node1, args: ['--src', POD_IPS['pod-a'], '--dst', WEB, '--dport', '80', '--in-interface', 'br0'], from: c.pods['pod-a'], dst: WEB, port: 80, src: POD_IPS['pod-a'] },
        ];
        for (const k of cases) {
          const predicted = await trace(k.ns, k.args);
          assert.ok(predicted.length > 0 && predicted.every((p) => p.verdict === 'ACCEPT'), `${k.name}: ${JSON.stringify(predicted)}`);
          const total = predicted.reduce((n, p) => n + p.probability, 0);
          assert.ok(Math.abs(total - 1) < 1e-6, `${k.name}: probabilities add up to 1 (${total})`);
          const observed = await tcp(k.from, k.dst, k.port, 30);
          assert.deepEqual(new Set(observed.map((o) => o.pod)), new Set(predicted.map((p) => podOf(p.ip))), `${k.name}: the endpoint set`);
          for (const o of observed) {
            const p = predicted.find((x) => podOf(x.ip) === o.pod);
            assert.equal(o.from !== k.src, p?.masquerade, `${k.name}: masquerade to ${o.pod} (pod saw ${o.from})`);
          }
        }
        const drop = await trace(c.node2, ['--src', POD_IPS['pod-c'], '--dst', LB_IP, '--dport', '80', '--in-interface', 'br0']);
        assert.deepEqual([...new Set(drop.map((p) => p.verdict))], ['DROP'], 'LB source range: predicted DROP');
        assert.equal((await runClient<string>(c.pods['pod-c'], ['tcp', LB_IP, '80', '1', '1000'])).ok, false, 'and the kernel dropped it');
        const reject = await trace(c.node1, ['--src', POD_IPS['pod-b'], '--dst', EMPTY, '--dport', '80', '--in-interface', 'br0']);
        assert.deepEqual([...new Set(reject.map((p) => p.verdict))], ['REJECT'], 'no endpoints: predicted REJECT');
        assert.match((await runClient<string>(c.pods['pod-b'], ['tcp', EMPTY, '80', '1', '1000'])).error ?? '', /ECONNREFUSED/, 'and the kernel rejected it');
      });

      await t.test('an endpoint removed mid-test gets no new connections and its UDP conntrack entries are gone', async () => {
        // A long-lived UDP flow from node1 itself to each DNS endpoint (one socket per flow).
        const flows = await runClient<{ text: string }>(c.node1, ['udp', DNS, '53', '12']);
        assert.ok(flows.ok, flows.error);
        const before = await c.node1.execOk('conntrack', ['-L', '-p', 'udp', '--dst-nat', POD_IPS['pod-b']]);
        assert.ok(before.stdout.includes(`src=${POD_IPS['pod-b']} `), `flows DNATed to pod-b exist before:\n${before.stdout}`);
        writeFileSync(file, manifest(['pod-a', 'pod-c'], ['pod-a']));
        await pollUntil('pod-b to leave web and dns', async () => {
          const got = await tcp(c.node1, WEB, 80, 12);
          const ct = await c.node1.exec('conntrack', ['-L', '-p', 'udp', '--dst-nat', POD_IPS['pod-b']]);
          return !got.some((g) => g.pod === 'pod-b') && !ct.stdout.includes(`src=${POD_IPS['pod-b']} `);
        }, { timeoutMs: 5000 * SLOW, stepMs: 200, describeLast: log });
        const after = await tcp(c.node1, WEB, 80, 30);
        assert.ok(!after.some((g) => g.pod === 'pod-b'));
      });

      await t.test('an established TCP connection outlives the removal of its endpoint, which gets no new connections', async () => {
        const session = clientSession(c.node1, 3000 * SLOW, 60_000);
        try {
          const first = await session.send({ open: `${HELD}:80` });
          assert.ok(first.ok && first.id !== undefined, first.error);
          const held = parse(first.reply ?? '').pod;
          assert.ok(held === 'pod-a' || held === 'pod-b', `a held endpoint answered: ${first.reply}`);
          const other: PodName = held === 'pod-a' ? 'pod-b' : 'pod-a';
          assert.deepEqual(await session.send({ send: first.id, text: 'before' }), { ok: true, reply: 'before' });
          writeFileSync(file, manifest(['pod-a', 'pod-c'], ['pod-a'], [other]));
          const real = `${POD_IPS[held]}:8081`;
          const ipvsList = async (): Promise<string> => (await c.node1.execOk('ipvsadm', ['-Ln', '-t', `${HELD}:80`])).stdout;
          if (mode === 'ipvs') {
            // Graceful termination: the removed real server stays, at weight 0, while it has a connection.
            const draining = new RegExp(`-> ${real.replace(/\./g, '\\.')}\\s+Masq\\s+0\\s+1\\s`);
            await pollUntil(`${real} at weight 0 with its one active connection`, async () => draining.test(await ipvsList()),
              { timeoutMs: 5000 * SLOW, stepMs: 200, describeLast: log });
          }
          await pollUntil(`new connections to reach only ${other}`, async () => {
            for (let i = 0; i < 6; i++) {
              const o = await session.send({ open: `${HELD}:80` });
              if (o.ok) await session.send({ close: o.id, reset: true });
              if (!o.ok || parse(o.reply ?? '').pod !== other) return false;
            }
            return true;
          }, { timeoutMs: 5000 * SLOW, stepMs: 200, describeLast: log });
          assert.deepEqual(await session.send({ send: first.id, text: 'after' }), { ok: true, reply: 'after' }, `the established connection still reaches ${held}`);
          assert.deepEqual(await session.send({ close: first.id, reset: true }), { ok: true });
          if (mode === 'ipvs') {
            // Drained (the reset connection leaves IPVS's table after its 10 s CLOSE state): deleted.
            await pollUntil(`the drained ${real} to be deleted`, async () => !(await ipvsList()).includes(real), { timeoutMs: 60_000, stepMs: 500, describeLast: log });
          }
        } finally {
          session.end();
        }
      });

      await t.test(`an external \`${info.flush[0]} ${info.flush[1].join(' ')}\` is repaired within the sync period`, async () => {
        // The flush and a probe run in one shell: a fresh node client would start slower than
        // kproxy repairs under the VM's emulation. The probe is shown to work before the flush.
        const probe = `timeout ${SLOW} bash -c 'exec 3<>/dev/tcp/${WEB}/80' 2>/dev/null && echo served || echo broken`;
        assert.equal((await c.node1.execOk('sh', ['-c', probe])).stdout.trim(), 'served', 'the probe reaches the service before the flush');
        const flushed = await c.node1.execOk('sh', ['-c', `"$@" && ${probe}`, 'sh', info.flush[0], ...info.flush[1]]);
        assert.equal(flushed.stdout.trim(), 'broken', 'the flush really broke the service');
        await pollUntil('the ClusterIP to work again', async () => (await runClient<string>(c.node1, ['tcp', WEB, '80', '1', '500'])).ok,
          { timeoutMs: (2000 + 3000) * SLOW, stepMs: 200, describeLast: log });
      });

      await kp1.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
      await kp2.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
      await t.test('--cleanup removes every rule kproxy installed', async () => {
        const r = await c.node1.exec(process.execPath, [KPROXY_BIN, '--cleanup']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(await info.leftovers(c.node1), []);
      });
    } finally {
      await cluster?.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(await rootNetworkState(), rootBefore, 'the root namespace is untouched');
  });
}
