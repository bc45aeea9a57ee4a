/**
 * userspace mode's REDIRECT ("portal") path, proven with real packets between network
 * namespaces:
 *
 *   [client 198.18.1.2] --veth-- [node 198.18.1.1: kproxy + three pods on 127.0.0.11-13]
 *
 * The Services' addresses (198.18.100.x) are on no interface, so kproxy cannot bind them: it
 * opens proxy ports and installs nat REDIRECT rules (KUBE-PORTALS-CONTAINER from PREROUTING
 * for traffic arriving from other hosts, KUBE-PORTALS-HOST from OUTPUT for the node's own).
 * kproxy runs as the real CLI (bin/kproxy.js) inside the node namespace.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  cleanupStaleNetns, createNetns, kernelTestGate, linkNetns, listNetns, type Netns, type NetnsProcess,
} from '../../src/platform/netns.js';
import { iptablesSave, KPROXY_BIN, pollUntil, POD_JS, rootNetworkState, runClient } from '../helpers/netns-util.js';

const PREFIX = 'us-redirect';
const NODE_IP = '198.18.1.1';
const CLIENT_IP = '198.18.1.2';
const WEB_VIP = '198.18.100.10';
const WEB_EXTERNAL_IP = '198.18.100.20';
const DNS_VIP = '198.18.100.11';
const NODE_PORT = 30080;
const PODS = [
  { name: 'pod-a', ip: '127.0.0.11' },
  { name: 'pod-b', ip: '127.0.0.12' },
  { name: 'pod-c', ip: '127.0.0.13' },
] as const;
const POD_NAMES = PODS.map((p) => p.name);

const WEB_YAML = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: netns
spec:
  type: NodePort
  clusterIP: ${WEB_VIP}
  externalIPs: ["${WEB_EXTERNAL_IP}"]
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 8080
    nodePort: ${NODE_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: netns
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  protocol: TCP
  port: 8080
endpoints:
${PODS.map((p) => `- addresses: ["${p.ip}"]\n  conditions: {ready: true}\n  nodeName: node1`).join('\n')}
`;

const DNS_YAML = `apiVersion: v1
kind: Service
metadata:
  name: dns
  namespace: netns
spec:
  clusterIP: ${DNS_VIP}
  ports:
  - name: dns
    protocol: UDP
    port: 53
    targetPort: 5353
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: netns
  labels:
    kubernetes.io/service-name: dns
addressType: IPv4
ports:
- name: dns
  protocol: UDP
  port: 5353
endpoints:
${PODS.map((p) => `- addresses: ["${p.ip}"]\n  conditions: {ready: true}\n  nodeName: node1`).join('\n')}
`;

/** Unrelated rules that exist before kproxy ever runs; kproxy (and --cleanup) must leave them alone. */
const SENTINEL_RULES = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:TEST-SENTINEL - [0:0]
-A PREROUTING -d 198.18.99.99/32 -p tcp -j TEST-SENTINEL
-A OUTPUT -d 198.18.99.98/32 -p udp -j RETURN
-A TEST-SENTINEL -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 198.18.99.97/32 -j DROP
COMMIT
`;

const JUMP_COMMENT = 'handle ClusterIPs; NOTE: this must be before the NodePort rules';

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** The REDIRECT rules for one portal address in both chains; returns their proxy ports. */
function portalRules(nat: string, ip: string, port: number, proto: 'tcp' | 'udp'): { container: number[]; host: number[] } {
  const find = (chain: string): number[] => {
    const re = new RegExp(`^-A ${chain} -d ${esc(ip)}/32 -p ${proto} -m comment --comment "?[^\\n]*?"? -m ${proto} --dport ${port} -j REDIRECT --to-ports (\\d+)$`, 'gm');
    return [...nat.matchAll(re)].map((m) => Number(m[1]));
  };
  return { container: find('KUBE-PORTALS-CONTAINER'), host: find('KUBE-PORTALS-HOST') };
}

/** Everything kproxy's userspace mode adds to the nat table: the two chains, their rules, the jumps. */
function userspaceLines(nat: string): string[] {
  return nat.split('\n').filter((l) => l.includes('KUBE-PORTALS'));
}

/** "tcp:PORT"/"udp:PORT" of the sockets `pid` listens on, from `ss -H -lntup`. */
function heldPorts(ss: string, pid: number): Set<string> {
  const out = new Set<string>();
  for (const line of ss.split('\n')) {
    const m = /^(tcp|udp)\s+\S+\s+\d+\s+\d+\s+\S+:(\d+)\s/.exec(line);
    if (m && line.includes(`pid=${pid},`)) out.add(`${m[1] ?? ''}:${m[2] ?? ''}`);
  }
  return out;
}

const firstWord = (s: string): string => s.split(' ')[0] ?? '';

test('userspace mode: REDIRECT portals carry real traffic between network namespaces', { timeout: 240_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['iptables', 'iptables-save', 'iptables-restore', 'ss'] }))) return;
  await cleanupStaleNetns(PREFIX);
  const rootBefore = await rootNetworkState();
  const made: Netns[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-netns-'));
  const manifest = join(dir, 'services.yaml');

  try {
    // ---- topology -----------------------------------------------------------------------
    const node = await createNetns(PREFIX);
    made.push(node);
    const client = await createNetns(PREFIX);
    made.push(client);
    await linkNetns(node, client, { aCidr: `${NODE_IP}/24`, bCidr: `${CLIENT_IP}/24`, aIfname: 'eth0', bIfname: 'eth0' });
    await client.addRoute('198.18.0.0/15', { via: NODE_IP });
    // So that the node's own connects to service addresses are routed at all (OUTPUT REDIRECT
    // then takes them); the route itself is never used for delivery.
    await node.addRoute('198.18.100.0/24', { via: CLIENT_IP });

    await node.execOk('iptables-restore', ['--noflush'], { input: SENTINEL_RULES });
    const beforeKproxy = await iptablesSave(node);
    assert.match(beforeKproxy, /TEST-SENTINEL/);

    // ---- pods -----------------------------------------------------------------------------
    for (const p of PODS) {
      const pod = node.spawn(process.execPath, [POD_JS, '--name', p.name, '--tcp', `${p.ip}:8080`, '--udp', `${p.ip}:5353`, '--max-ms', '200000']);
      await pod.waitForOutput('ready', 10_000);
    }

    let writtenWithoutDns = false;
    const startKproxy = async (): Promise<NetnsProcess> => {
      const proc = node.spawn(process.execPath, [
        KPROXY_BIN, '--proxy-mode', 'userspace', '--manifests', manifest, '--hostname-override', 'node1',
        '--healthz-bind-address', '', '--metrics-bind-address', '', '--iptables-min-sync-period', '0s', '-v', '2',
      ]);
      const log = (): string => `kproxy output:\n${(proc.stdout() + proc.stderr()).slice(-6000)}`;
      await pollUntil('kproxy to install the portal rules and listen on the NodePort', async () => {
        if (!proc.running) throw new Error(`kproxy exited early (${JSON.stringify(await proc.exited)})\n${log()}`);
        const nat = await iptablesSave(node, 'nat');
        // Ports held by this kproxy process (rules left by an earlier, dead one do not count).
        const held = heldPorts((await node.exec('ss', ['-H', '-lntup'])).stdout, proc.pid);
        const portals: [string, number, 'tcp' | 'udp'][] = [[WEB_VIP, 80, 'tcp'], [WEB_EXTERNAL_IP, 80, 'tcp']];
        if (!writtenWithoutDns) portals.push([DNS_VIP, 53, 'udp']);
        const ready = portals.every(([ip, port, proto]) => {
          const r = portalRules(nat, ip, port, proto);
          return r.container.length === 1 && r.host.length === 1 && held.has(`${proto}:${r.container[0] ?? 0}`);
        });
        return ready && held.has(`tcp:${NODE_PORT}`) && /-A PREROUTING .*-j KUBE-PORTALS-CONTAINER/.test(nat) && /-A OUTPUT .*-j KUBE-PORTALS-HOST/.test(nat);
      }, { timeoutMs: 15_000, stepMs: 100, describeLast: log });
      return proc;
    };
    writeFileSync(manifest, `${WEB_YAML}---\n${DNS_YAML}`);
    let kp = await startKproxy();
    const kpLog = (): string => `kproxy output:\n${(kp.stdout() + kp.stderr()).slice(-6000)}`;
    /** Later steps need a running kproxy even if an earlier one crashed it (that step failed already). */
    const ensureKproxy = async (): Promise<void> => {
      if (kp.running) return;
      t.diagnostic(`kproxy had exited (${JSON.stringify(await kp.exited)}); restarting it for the remaining steps`);
      kp = await startKproxy();
    };

    // ---- 1. ClusterIP from another host: PREROUTING → KUBE-PORTALS-CONTAINER ------------------
    await t.test('TCP to the ClusterIP from the client namespace is balanced round robin across the three pods', async () => {
      const r = await runClient<string>(client, ['tcp', WEB_VIP, '80', '6']);
      assert.ok(r.ok, `${r.error ?? ''}\n${kpLog()}`);
      assert.deepEqual(r.replies.map(firstWord), [...POD_NAMES, ...POD_NAMES], 'rr over the endpoints in slice order');
      // The pods see kproxy's relay connection, from the node itself (loopback), not the client.
      for (const line of r.replies) assert.match(line, /^pod-[abc] 127\.0\.0\.1:\d+$/);
    });

    // ---- 2. ClusterIP from the node itself: OUTPUT → KUBE-PORTALS-HOST -------------------------
    await t.test('the ClusterIP works from inside the node namespace (OUTPUT path)', async () => {
      const r = await runClient<string>(node, ['tcp', WEB_VIP, '80', '3']);
      assert.ok(r.ok, `${r.error ?? ''}\n${kpLog()}`);
      // Same service port, same balancer: rr continues where the client's six connections left off.
      assert.deepEqual(r.replies.map(firstWord), POD_NAMES);
    });

    // ---- 3. NodePort and externalIP ------------------------------------------------------------
    await t.test('the NodePort on the node address and the externalIP work from the client', async () => {
      const np = await runClient<string>(client, ['tcp', NODE_IP, String(NODE_PORT), '3']);
      assert.ok(np.ok, `${np.error ?? ''}\n${kpLog()}`);
      assert.deepEqual(np.replies.map(firstWord), POD_NAMES, 'NodePort: rr across all pods');
      const ext = await runClient<string>(client, ['tcp', WEB_EXTERNAL_IP, '80', '3']);
      assert.ok(ext.ok, `${ext.error ?? ''}\n${kpLog()}`);
      assert.deepEqual(ext.replies.map(firstWord), POD_NAMES, 'externalIP: rr across all pods');
      const extLocal = await runClient<string>(node, ['tcp', WEB_EXTERNAL_IP, '80', '3']);
      assert.ok(extLocal.ok, `${extLocal.error ?? ''}\n${kpLog()}`);
      assert.deepEqual(new Set(extLocal.replies.map(firstWord)), new Set(POD_NAMES), 'externalIP from the node itself (OUTPUT)');
    });

    // ---- 5a. the rules while kproxy runs -------------------------------------------------------
    await t.test('iptables-save shows the portal chains, REDIRECT rules to live proxy ports, and the jumps first in PREROUTING/OUTPUT', async () => {
      const nat = await iptablesSave(node, 'nat');
      assert.match(nat, /^:KUBE-PORTALS-CONTAINER - \[0:0\]$/m);
      assert.match(nat, /^:KUBE-PORTALS-HOST - \[0:0\]$/m);
      const chainRules = (chain: string): string[] => nat.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
      assert.equal(chainRules('PREROUTING')[0], `-A PREROUTING -m comment --comment "${JUMP_COMMENT}" -j KUBE-PORTALS-CONTAINER`);
      assert.equal(chainRules('OUTPUT')[0], `-A OUTPUT -m comment --comment "${JUMP_COMMENT}" -j KUBE-PORTALS-HOST`);
      assert.equal(chainRules('PREROUTING').filter((l) => l.includes('KUBE-PORTALS')).length, 1, 'exactly one jump');
      assert.equal(chainRules('OUTPUT').filter((l) => l.includes('KUBE-PORTALS')).length, 1, 'exactly one jump');
      // Three portal addresses (ClusterIP, externalIP, UDP ClusterIP), each in both chains; no
      // portal for the NodePort, which kproxy binds directly.
      assert.equal(chainRules('KUBE-PORTALS-CONTAINER').length, 3, nat);
      assert.equal(chainRules('KUBE-PORTALS-HOST').length, 3, nat);
      assert.doesNotMatch(nat, new RegExp(`--dport ${NODE_PORT}\\b`));
      const web = portalRules(nat, WEB_VIP, 80, 'tcp');
      const ext = portalRules(nat, WEB_EXTERNAL_IP, 80, 'tcp');
      const dns = portalRules(nat, DNS_VIP, 53, 'udp');
      for (const [what, r] of [['web', web], ['external', ext], ['dns', dns]] as const) {
        assert.equal(r.container.length, 1, `${what} in KUBE-PORTALS-CONTAINER`);
        assert.deepEqual(r.host, r.container, `${what}: both chains redirect to the same proxy port`);
      }
      const tcpListening = (await node.execOk('ss', ['-ltnH'])).stdout;
      const udpBound = (await node.execOk('ss', ['-lunH'])).stdout;
      for (const p of [web.container[0], ext.container[0]]) assert.match(tcpListening, new RegExp(`:${p ?? -1}\\s`), `TCP proxy port ${p ?? '?'} listens`);
      assert.match(udpBound, new RegExp(`:${dns.container[0] ?? -1}\\s`), 'UDP proxy port is bound');
      // Everything else is untouched: without kproxy's lines, the ruleset is what it was before.
      const all = await iptablesSave(node);
      assert.equal(all.split('\n').filter((l) => !l.includes('KUBE-PORTALS')).join('\n'), beforeKproxy);
    });

    // ---- 4. UDP through the portal (after 5a, which needs no UDP traffic) --------------------------------------------------------------
    await t.test('UDP to the ClusterIP is relayed and the replies come from the service address', async () => {
      const r = await runClient<{ text: string; address: string; port: number }>(client, ['udp', DNS_VIP, '53', '3']);
      assert.ok(r.ok, `${r.error ?? ''}\n${kpLog()}`);
      assert.deepEqual(r.replies, POD_NAMES.map((name, i) => ({ text: `${name}: ping ${i}`, address: DNS_VIP, port: 53 })));
      assert.ok(kp.running, `kproxy is still running\n${kpLog()}`);
    });

    // ---- 6. removing a Service removes its rules ---------------------------------------------
    await t.test('removing the UDP Service from the manifest removes its portal rules within about a second', async () => {
      await ensureKproxy();
      writtenWithoutDns = true;
      const started = Date.now();
      writeFileSync(manifest, WEB_YAML);
      await pollUntil('the dns portal rules to disappear', async () => !(await iptablesSave(node, 'nat')).includes(DNS_VIP),
        { timeoutMs: 5000, stepMs: 25, describeLast: kpLog });
      const elapsed = Date.now() - started;
      t.diagnostic(`dns portal rules removed ${elapsed} ms after the manifest was rewritten`);
      assert.ok(elapsed <= 1500, `removed after ${elapsed} ms (want ~1 s)`);
      const nat = await iptablesSave(node, 'nat');
      assert.equal(portalRules(nat, WEB_VIP, 80, 'tcp').container.length, 1, 'the web portals stay');
      assert.equal(portalRules(nat, WEB_EXTERNAL_IP, 80, 'tcp').host.length, 1);
      const still = await runClient<string>(client, ['tcp', WEB_VIP, '80', '1']);
      assert.ok(still.ok, still.error);
      const gone = await runClient<unknown>(client, ['udp', DNS_VIP, '53', '1', '500']);
      assert.equal(gone.ok, false, 'no reply from the removed service');
    });

    await t.test('adding it back by an atomic replace (temp file renamed over the manifest) restores its portal rules', async () => {
      await ensureKproxy();
      const started = Date.now();
      const tmp = `${manifest}.tmp`;
      writeFileSync(tmp, `${WEB_YAML}---\n${DNS_YAML}`);
      renameSync(tmp, manifest);
      writtenWithoutDns = false;
      await pollUntil('the dns portal rules to come back', async () => {
        const r = portalRules(await iptablesSave(node, 'nat'), DNS_VIP, 53, 'udp');
        return r.container.length === 1 && r.host.length === 1;
      }, { timeoutMs: 5000, stepMs: 25, describeLast: kpLog });
      const elapsed = Date.now() - started;
      t.diagnostic(`dns portal rules back ${elapsed} ms after the manifest was replaced`);
      assert.ok(elapsed <= 1500, `restored after ${elapsed} ms (want ~1 s)`);
    });

    // ---- 5b. SIGTERM removes everything -------------------------------------------------------
    await t.test('after SIGTERM kproxy exits 0 and its chains and jumps are gone; nothing else changed', async () => {
      await ensureKproxy();
      const exit = await kp.stop({ signal: 'SIGTERM', timeoutMs: 15_000 });
      assert.deepEqual(exit, { code: 0, signal: null }, kpLog());
      const all = await iptablesSave(node);
      assert.deepEqual(userspaceLines(all), []);
      assert.equal(all, beforeKproxy, 'the whole ruleset is back to what it was before kproxy ran');
      const np = await runClient<string>(client, ['tcp', NODE_IP, String(NODE_PORT), '1', '1000']);
      assert.equal(np.ok, false, 'the NodePort listener is closed');
    });

    // ---- 5c. SIGKILL leaves the rules; --cleanup removes them -----------------------------------
    await t.test('after SIGKILL the rules stay; `kproxy --cleanup` removes them and touches nothing else', async () => {
      writeFileSync(manifest, `${WEB_YAML}---\n${DNS_YAML}`);
      writtenWithoutDns = false;
      const second = await startKproxy();
      kp = second;
      const live = await runClient<string>(client, ['tcp', WEB_VIP, '80', '1']);
      assert.ok(live.ok, live.error);
      assert.deepEqual(await second.stop({ signal: 'SIGKILL', timeoutMs: 5000 }), { code: null, signal: 'SIGKILL' });
      const left = await iptablesSave(node, 'nat');
      assert.equal(userspaceLines(left).length, 2 + 6 + 2, `chains, six REDIRECT rules and two jumps stay behind:\n${left}`);

      const cleanup = await node.exec(process.execPath, [KPROXY_BIN, '--cleanup', '-v', '2'], { timeoutMs: 30_000 });
      assert.equal(cleanup.code, 0, cleanup.stderr);
      const all = await iptablesSave(node);
      assert.deepEqual(userspaceLines(all), []);
      assert.equal(all, beforeKproxy, 'cleanup removed only what kproxy installed');
      // Idempotent: a second cleanup finds nothing and changes nothing.
      const again = await node.exec(process.execPath, [KPROXY_BIN, '--cleanup'], { timeoutMs: 30_000 });
      assert.equal(again.code, 0, again.stderr);
      assert.equal(await iptablesSave(node), beforeKproxy);
    });
  } finally {
    await Promise.all(made.map((ns) => ns.destroy()));
    rmSync(dir, { recursive: true, force: true });
  }

  await t.test('the namespaces are gone and the root namespace is unchanged', async () => {
    const names = await listNetns();
    for (const ns of made) assert.ok(!names.includes(ns.name), ns.name);
    assert.deepEqual(await rootNetworkState(), rootBefore);
  });
});
