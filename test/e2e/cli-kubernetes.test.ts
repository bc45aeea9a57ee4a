/**
 * kproxy against an API server (the HTTPS test server that speaks list/watch): a Service and
 * its EndpointSlice created through the API are reachable through the running CLI within a
 * second; an endpoint change applies; a dropped watch and a 410 Gone cause no gap in service.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestApiServer } from '../helpers/apiserver.js';
import { tcpPod, waitFor, who, type TcpPod } from '../helpers/net.js';

const BIN = fileURLToPath(new URL('../../../bin/kproxy.js', import.meta.url));

function slice(pods: string[]): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'api-web-1', namespace: 'e2e', labels: { 'kubernetes.io/service-name': 'api-web' } },
    addressType: 'IPv4', ports: [{ name: 'http', port: 9501, protocol: 'TCP' }],
    endpoints: pods.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
  };
}

test('CLI with --kubeconfig: API changes reach the datapath within a second; watch drops and 410 Gone leave no gap', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-k8s-e2e-'));
  const server = await TestApiServer.start();
  const kubeconfig = server.writeKubeconfig(join(dir, 'kubeconfig'));
  const pods: TcpPod[] = [await tcpPod('p1', '127.0.41.1', 9501), await tcpPod('p2', '127.0.41.2', 9501)];
  const child = spawn(process.execPath, [BIN, '--proxy-mode', 'userspace', '--kubeconfig', kubeconfig, '--hostname-override', 'n1',
    '--healthz-bind-address', '', '--metrics-bind-address', '', '--iptables-min-sync-period', '0s', '-v', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const reap = (): void => { if (child.exitCode === null) child.kill('SIGKILL'); };
  process.once('exit', reap);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  let stop = false;
  let background: Promise<void> | undefined;
  try {
    await waitFor('kproxy to sync from the API', () => /"synced proxy rules"/.test(stderr), 10_000, 50);
    await waitFor('the Starting event', () => server.events.length > 0, 5000, 20);
    assert.deepEqual(server.events.map((e) => [e.apiVersion, e.namespace, e.body.reason, e.body.type, e.body.regarding]),
      [['events.k8s.io/v1', 'default', 'Starting', 'Normal', { kind: 'Node', name: 'n1', uid: 'n1' }]], 'kproxy announced itself on its Node once');
    const t0 = Date.now();
    server.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'api-web', namespace: 'e2e' }, spec: { clusterIP: '127.0.42.1', ports: [{ name: 'http', port: 80, targetPort: 9501 }] } });
    server.apply(slice(['127.0.41.1']));
    await waitFor('the service to be reachable', () => who('127.0.42.1', 80).then((n) => n === 'p1', () => false), 1000, 20);
    const createMs = Date.now() - t0;

    const failures: string[] = [];
    background = (async () => {
      while (!stop) {
        await who('127.0.42.1', 80).catch((e: unknown) => { failures.push(String(e)); });
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    server.dropWatches('destroy');
    await new Promise((r) => setTimeout(r, 300));
    server.expireHistory();
    server.dropWatches('end');
    server.apply(slice(['127.0.41.2']));
    await waitFor('the endpoint change after 410 Gone', () => who('127.0.42.1', 80).then((n) => n === 'p2', () => false), 5000, 50);
    stop = true;
    await background;
    assert.deepEqual(failures, [], 'no connection failed while watches broke and relisted');
    assert.ok(createMs < 1000, `created service reachable in ${createMs} ms`);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  } finally {
    stop = true;
    await background;
    reap();
    for (const p of pods) await p.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
