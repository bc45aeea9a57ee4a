/**
 * userspace mode's retry on an endpoint that does not answer: inside a namespace, SYNs to one
 * endpoint are dropped by an iptables rule, so a connect to it hangs. kproxy (the real CLI)
 * must give up after --userspace-connect-timeout, relay to the next endpoint, and pass the
 * silent one over for the cool-down. Nothing of this touches the root namespace.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupStaleNetns, createNetns, kernelTestGate, type Netns } from '../../src/platform/netns.js';
import { KPROXY_BIN, pollUntil, POD_JS, runClient } from '../helpers/netns-util.js';

const PREFIX = 'us-timeout';
const VIP = '127.0.0.50';

const MANIFEST = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: netns}
spec:
  clusterIP: ${VIP}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: netns
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: ["127.0.0.99"]
- addresses: ["127.0.0.12"]
- addresses: ["127.0.0.13"]
`;

test('userspace mode: an endpoint that drops SYNs is abandoned after the connect timeout and passed over', { timeout: 120_000 }, async (t) => {
  if (!(await kernelTestGate(t, { tools: ['iptables'] }))) return;
  await cleanupStaleNetns(PREFIX);
  let ns: Netns | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-timeout-'));
  try {
    ns = await createNetns(PREFIX);
    const node = ns;
    await node.execOk('iptables', ['-w', '5', '-A', 'OUTPUT', '-d', '127.0.0.99/32', '-p', 'tcp', '--dport', '8080', '-j', 'DROP']);
    for (const [name, ip] of [['pod-b', '127.0.0.12'], ['pod-c', '127.0.0.13']] as const) {
      const pod = node.spawn(process.execPath, [POD_JS, '--name', name, '--tcp', `${ip}:8080`, '--max-ms', '100000']);
      await pod.waitForOutput('ready', 10_000);
    }
    const manifest = join(dir, 'web.yaml');
    writeFileSync(manifest, MANIFEST);
    const kp = node.spawn(process.execPath, [KPROXY_BIN, '--proxy-mode', 'userspace', '--manifests', manifest, '--hostname-override', 'node1',
      '--healthz-bind-address', '', '--metrics-bind-address', '', '--userspace-connect-timeout', '400ms', '--userspace-failure-cooldown', '60s', '-v', '2']);
    const log = (): string => (kp.stdout() + kp.stderr()).slice(-4000);
    await pollUntil('kproxy to serve the ClusterIP', () => /serving service address/.test(kp.stderr()), { timeoutMs: 15_000, describeLast: log });

    // rr starts at the silent endpoint: the first connection waits out the timeout, then pod-b.
    const t0 = Date.now();
    const first = await runClient<string>(node, ['tcp', VIP, '80', '1', '5000']);
    const firstMs = Date.now() - t0;
    assert.ok(first.ok, `${first.error ?? ''}\n${log()}`);
    assert.equal(first.replies[0]?.split(' ')[0], 'pod-b');
    assert.ok(firstMs >= 400, `the first connection waited for the connect timeout (${firstMs} ms)`);
    assert.match(kp.stderr(), /endpoint failed; trying another.*127\.0\.0\.99:8080.*connect timeout/);

    // During the cool-down the silent endpoint is passed over: 40 connections, none waits.
    const t1 = Date.now();
    const rest = await runClient<string>(node, ['tcp', VIP, '80', '40', '5000']);
    const restMs = Date.now() - t1;
    assert.ok(rest.ok, `${rest.error ?? ''}\n${log()}`);
    assert.equal(rest.replies.length, 40);
    assert.deepEqual(new Set(rest.replies.map((r) => r.split(' ')[0])), new Set(['pod-b', 'pod-c']));
    assert.ok(restMs < 400 * 5, `no connection waited for the silent endpoint (${restMs} ms for 40)`);
    assert.equal((kp.stderr().match(/endpoint failed; trying another/g) ?? []).length, 1, 'the silent endpoint was tried once');
    await kp.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
  } finally {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
