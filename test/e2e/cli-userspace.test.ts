/**
 * kproxy as a user runs it: the CLI process in userspace mode on a manifest folder, edited
 * while traffic flows. Edits apply within a second and never interrupt services that stay valid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tcpPod, waitFor, who, type TcpPod } from '../helpers/net.js';

const BIN = fileURLToPath(new URL('../../../bin/kproxy.js', import.meta.url));
const HEALTHZ = 19256;
const METRICS = 19249;

function service(name: string, ip: string, pods: string[], port = 9401): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: e2e}
spec:
  clusterIP: ${ip}
  ports: [{name: http, port: 80, targetPort: ${port}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}-1
  namespace: e2e
  labels: {kubernetes.io/service-name: ${name}}
addressType: IPv4
ports: [{name: http, port: ${port}}]
endpoints:
${pods.map((p) => `- addresses: [${p}]`).join('\n')}
`;
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m?.[1] === undefined ? NaN : Number(m[1]);
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text() };
}

test('CLI userspace mode: serves, follows manifest edits within a second, survives a broken edit, drains on SIGTERM', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-e2e-'));
  const pods: TcpPod[] = [];
  for (const [i, ip] of ['127.0.37.1', '127.0.37.2', '127.0.37.3'].entries()) pods.push(await tcpPod(`p${i + 1}`, ip, 9401));
  writeFileSync(join(dir, 'a.yaml'), service('alpha', '127.0.38.1', ['127.0.37.1', '127.0.37.2', '127.0.37.3']));
  const child = spawn(process.execPath, [BIN, '--proxy-mode', 'userspace', '--manifests', dir, '--hostname-override', 'n1',
    '--healthz-bind-address', `127.0.0.1:${HEALTHZ}`, '--metrics-bind-address', `127.0.0.1:${METRICS}`,
    '--iptables-min-sync-period', '0s', '--shutdown-drain-timeout', '1s', '-v', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Never leave kproxy running, even if this test process is cancelled.
  const reap = (): void => { if (child.exitCode === null) child.kill('SIGKILL'); };
  process.once('exit', reap);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let background: Promise<void> | undefined;
  let stop = false;
  try {
    await waitFor('alpha to serve', () => who('127.0.38.1', 80).then(() => true, () => false), 10_000, 50);
    assert.equal((await get(HEALTHZ, '/healthz')).status, 200);
    const hz = JSON.parse((await get(HEALTHZ, '/healthz')).body) as Record<string, unknown>;
    assert.equal(hz.nodeEligible, true);
    assert.equal(typeof hz.lastUpdated, 'string');
    assert.equal((await get(HEALTHZ, '/livez')).status, 200);
    assert.equal((await get(METRICS, '/proxyMode')).body, 'userspace');

    // Traffic to alpha runs for the whole test; not one connection may fail.
    let ok = 0;
    const failures: string[] = [];
    background = (async () => {
      while (!stop) {
        await who('127.0.38.1', 80).then(() => { ok++; }, (e: unknown) => { failures.push(String(e)); });
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    // 1. Add a service in a new file.
    let t0 = Date.now();
    writeFileSync(join(dir, 'b.yaml'), service('beta', '127.0.38.2', ['127.0.37.3']));
    await waitFor('beta to serve', () => who('127.0.38.2', 80).then((n) => n === 'p3', () => false), 1000, 20);
    const addMs = Date.now() - t0;

    // 2. Remove an endpoint of alpha: within a second p1 gets no new connections.
    // Background traffic shares the rr rotation, so "three picks without p1" proves nothing;
    // wait for the endpoint change to be counted and synced (metrics), then check.
    const e0 = metricValue((await get(METRICS, '/metrics')).body, 'kubeproxy_sync_proxy_rules_endpoint_changes_total');
    t0 = Date.now();
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '127.0.38.1', ['127.0.37.2', '127.0.37.3']));
    await waitFor('the endpoint change to be synced', async () => {
      const m = (await get(METRICS, '/metrics')).body;
      return metricValue(m, 'kubeproxy_sync_proxy_rules_endpoint_changes_total') > e0
        && metricValue(m, 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') * 1000 >= t0;
    }, 1000, 10);
    const removeMs = Date.now() - t0;
    for (let i = 0; i < 9; i++) assert.match(await who('127.0.38.1', 80), /^p[23]$/, 'p1 takes no new connections');

    // 3. Break the YAML of a.yaml: alpha keeps its last good version; beta is untouched.
    writeFileSync(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: alpha\n  namespace: [e2e\n');
    await waitFor('the problem to be reported', () => /a\.yaml/.test(stderr) && /E\d{4}/.test(stderr), 2000, 20);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await who('127.0.38.2', 80), 'p3');
    for (let i = 0; i < 4; i++) assert.match(await who('127.0.38.1', 80), /^p[23]$/);

    // 4. An invalid object next to a valid one: the valid one is served, the bad one reported with its field.
    writeFileSync(join(dir, 'c.yaml'), service('gamma', '127.0.38.3', ['127.0.37.1']) + '---\n' + service('delta', '127.0.38.999', ['127.0.37.1']));
    await waitFor('gamma to serve', () => who('127.0.38.3', 80).then((n) => n === 'p1', () => false), 1000, 20);
    await waitFor('delta problem reported', () => /c\.yaml/.test(stderr) && /clusterIP/.test(stderr), 1000, 20);

    // 5. Fix a.yaml again.
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '127.0.38.1', ['127.0.37.1']));
    await waitFor('alpha back on p1 only', async () => (await who('127.0.38.1', 80)) === 'p1' && (await who('127.0.38.1', 80)) === 'p1', 1000, 20);

    stop = true;
    await background;
    assert.deepEqual(failures, [], 'no connection to a valid service failed during the edits');
    assert.ok(ok > 20, `background traffic ran (${ok} connections)`);
    assert.ok(addMs < 1000 && removeMs < 1000, `edits applied within a second (add ${addMs} ms, remove ${removeMs} ms)`);

    const metrics = (await get(METRICS, '/metrics')).body;
    for (const name of ['kubeproxy_sync_proxy_rules_duration_seconds_bucket', 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', 'kubeproxy_sync_proxy_rules_service_changes_total',
      'kubeproxy_sync_proxy_rules_endpoint_changes_total', 'kproxy_userspace_endpoint_active_connections', 'kproxy_source_problems_total{source="files",code="KP_ERR_MANIFEST_INVALID_IP"}']) {
      assert.ok(metrics.includes(name), `metrics has ${name}`);
    }

    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    await assert.rejects(who('127.0.38.1', 80));
  } finally {
    stop = true;
    await background;
    if (child.exitCode === null) child.kill('SIGKILL');
    for (const p of pods) await p.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
