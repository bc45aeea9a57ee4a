import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SourceEvent, SourceProblem } from '../../../src/core/events.js';
import { memoryLogger } from '../../../src/observability/log.js';
import { KUBERNETES_PROBLEM, KUBERNETES_SOURCE_ACCESS, KubernetesSource, type KubernetesSourceOptions } from '../../../src/sources/kubernetes/source.js';
import { TestApiServer } from '../../helpers/apiserver.js';

type Obj = Record<string, unknown>;

function rawSvc(ns: string, name: string, over: { clusterIP?: string; type?: string; labels?: Record<string, string>; port?: number; externalName?: string } = {}): Obj {
  const clusterIP = over.clusterIP ?? '198.18.100.1';
  const spec: Obj = {
    type: over.type ?? 'ClusterIP',
    ports: [{ name: 'http', protocol: 'TCP', port: over.port ?? 80, targetPort: 8080 }],
  };
  if (over.type === 'ExternalName') spec.externalName = over.externalName ?? 'example.com';
  else {
    spec.clusterIP = clusterIP;
    spec.clusterIPs = [clusterIP];
  }
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, labels: over.labels ?? {} }, spec };
}

function rawSlice(ns: string, name: string, service: string, ips: string[], over: { addressType?: string; labels?: Record<string, string> } = {}): Obj {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': service, ...over.labels } },
    addressType: over.addressType ?? 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  };
}

function rawNode(name: string, labels: Record<string, string> = {}): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels },
    spec: { podCIDR: '198.18.1.0/24', podCIDRs: ['198.18.1.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] },
  };
}

async function waitFor(what: string, pred: () => boolean, timeoutMs = 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function describe(e: SourceEvent): string {
  if (e.kind === 'synced') return `synced ${e.source}`;
  const o = e.object;
  return o.kind === 'Node' ? `${e.type} Node ${o.name}` : `${e.type} ${o.kind} ${o.namespace}/${o.name}`;
}

interface Harness {
  server: TestApiServer;
  source: KubernetesSource;
  events: SourceEvent[];
  problems: SourceProblem[];
  log: ReturnType<typeof memoryLogger>;
  kubeconfig: string;
  names(): string[];
  close(): Promise<void>;
}

async function setup(opts: { prepare?: (s: TestApiServer) => void; gone?: 'event' | 'http'; token?: string; source?: Partial<KubernetesSourceOptions>; waitSynced?: boolean } = {}): Promise<Harness> {
  const server = await TestApiServer.start(opts.gone === undefined ? {} : { gone: opts.gone });
  opts.prepare?.(server);
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-k8s-'));
  const kubeconfig = server.writeKubeconfig(join(dir, 'kubeconfig'), opts.token === undefined ? {} : { token: opts.token });
  const events: SourceEvent[] = [];
  const problems: SourceProblem[] = [];
  const log = memoryLogger(10);
  const source = new KubernetesSource({
    kubeconfig, nodeName: 'n1', onProblem: (p) => problems.push(p), log, retryBaseMs: 50, retryMaxMs: 200, ...opts.source,
  });
  try {
    await source.start((e) => events.push(e));
    // Generous: this machine may be loaded; what a test measures it measures after this.
    if (opts.waitSynced ?? true) await waitFor('synced', () => events.some((e) => e.kind === 'synced'), 10_000);
  } catch (err) {
    // Leave nothing open behind a failed setup (an open server would keep the test file alive).
    await source.close();
    await server.close();
    throw err;
  }
  return {
    server, source, events, problems, log, kubeconfig,
    names: () => events.map(describe),
    close: async () => {
      await source.close();
      await server.close();
    },
  };
}

function seed(s: TestApiServer): void {
  s.apply(rawSvc('default', 'web', { clusterIP: '198.18.100.1' }));
  s.apply(rawSlice('default', 'web-abc', 'web', ['198.18.1.10']));
  s.apply(rawSvc('kube-system', 'dns', { clusterIP: '198.18.100.10', port: 53 }));
  s.apply(rawNode('n1', { 'topology.kubernetes.io/zone': 'z1' }));
  s.apply(rawNode('n2'));
}

test('initial list: add events for every object, then synced once; other nodes ignored', async () => {
  const h = await setup({ prepare: seed });
  try {
    const names = h.names();
    assert.deepEqual([...names].sort(), [
      'add EndpointSlice default/web-abc', 'add Node n1', 'add Service default/web', 'add Service kube-system/dns', 'synced kubernetes',
    ]);
    assert.equal(names[names.length - 1], 'synced kubernetes');
    const svc = h.events.find((e) => e.kind === 'Service' && e.object.name === 'web');
    assert.ok(svc !== undefined && svc.kind === 'Service');
    assert.equal(svc.object.clusterIP, '198.18.100.1');
    assert.deepEqual(svc.object.origin, { source: 'kubernetes' });
    const node = h.events.find((e) => e.kind === 'Node');
    assert.ok(node !== undefined && node.kind === 'Node');
    assert.equal(node.object.labels['topology.kubernetes.io/zone'], 'z1');
    assert.deepEqual(h.problems, []);
    assert.equal(h.source.isSynced, true);
    // The node informer asks only for its own node.
    assert.ok(h.server.requests.some((r) => r.startsWith('GET /api/v1/nodes?') && r.includes('fieldSelector=metadata.name%3Dn1')), h.server.requests.join('\n'));
    // n2 changes never reach us.
    h.server.apply(rawNode('n2', { x: 'y' }));
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!h.names().some((n) => n.includes('n2')));
  } finally {
    await h.close();
  }
});

test('an empty cluster still syncs', async () => {
  const h = await setup();
  try {
    assert.deepEqual(h.names(), ['synced kubernetes']);
  } finally {
    await h.close();
  }
});

test('create, update and delete through the API server arrive within a second', async () => {
  const h = await setup({ prepare: seed });
  try {
    h.events.length = 0;
    await waitFor('watches', () => h.server.watchCount() === 3);
    h.server.apply(rawSvc('default', 'new', { clusterIP: '198.18.100.2' }));
    await waitFor('add', () => h.names().includes('add Service default/new'));
    h.server.apply(rawSlice('default', 'web-abc', 'web', ['198.18.1.10', '198.18.1.11']));
    await waitFor('slice update', () => h.names().includes('update EndpointSlice default/web-abc'));
    const upd = h.events.find((e) => e.kind === 'EndpointSlice' && e.type === 'update');
    assert.ok(upd !== undefined && upd.kind === 'EndpointSlice' && upd.type === 'update');
    assert.equal(upd.previous.endpoints.length, 1);
    assert.equal(upd.object.endpoints.length, 2);
    h.server.apply(rawNode('n1', { 'topology.kubernetes.io/zone': 'z2' }));
    await waitFor('node update', () => h.names().includes('update Node n1'));
    h.server.delete('Service', 'default', 'new');
    await waitFor('delete', () => h.names().includes('delete Service default/new'));
    // An update that changes nothing kproxy reads (only resourceVersion) emits nothing.
    h.server.apply(rawSvc('default', 'web', { clusterIP: '198.18.100.1' }));
    h.server.bookmark();
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(h.names(), ['add Service default/new', 'update EndpointSlice default/web-abc', 'update Node n1', 'delete Service default/new']);
  } finally {
    await h.close();
  }
});

for (const how of ['end', 'destroy'] as const) {
  test(`a dropped watch (${how}) reconnects from its resourceVersion: no deletes, later changes arrive`, async () => {
    const h = await setup({ prepare: seed });
    try {
      await waitFor('watches', () => h.server.watchCount() === 3);
      h.events.length = 0;
      const lists = h.server.requests.filter((r) => !r.includes('watch=true')).length;
      h.server.dropWatches(how);
      await waitFor('reconnect', () => h.server.watchCount() === 3, 3000);
      h.server.apply(rawSvc('default', 'after', { clusterIP: '198.18.100.3' }));
      h.server.delete('EndpointSlice', 'default', 'web-abc');
      await waitFor('changes', () => h.names().includes('add Service default/after') && h.names().includes('delete EndpointSlice default/web-abc'));
      // Different informers (separate watches): no order between them.
      assert.deepEqual([...h.names()].sort(), ['add Service default/after', 'delete EndpointSlice default/web-abc']);
      // Resumed by watching from the last resourceVersion, not by relisting.
      assert.equal(h.server.requests.filter((r) => !r.includes('watch=true')).length, lists);
    } finally {
      await h.close();
    }
  });
}

for (const gone of ['event', 'http'] as const) {
  test(`410 Gone (${gone}) relists: no spurious deletes, changes made in the gap arrive as add/update/delete`, async () => {
    const h = await setup({ prepare: seed, gone });
    try {
      await waitFor('watches', () => h.server.watchCount() === 3);
      h.events.length = 0;
      // All in one tick: the client cannot watch these changes, and its resourceVersion expires.
      h.server.dropWatches();
      h.server.apply(rawSvc('default', 'gap', { clusterIP: '198.18.100.4' }));
      h.server.apply(rawSlice('default', 'web-abc', 'web', ['198.18.1.12']));
      h.server.delete('Service', 'kube-system', 'dns');
      h.server.expireHistory();
      await waitFor('relist', () => h.events.length >= 3, 3000);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual([...h.names()].sort(), ['add Service default/gap', 'delete Service kube-system/dns', 'update EndpointSlice default/web-abc']);
      await waitFor('watches', () => h.server.watchCount() === 3, 3000);
      h.server.apply(rawSvc('default', 'later', { clusterIP: '198.18.100.5' }));
      await waitFor('later', () => h.names().includes('add Service default/later'));
      assert.equal(h.names().filter((n) => n.startsWith('synced')).length, 0);
    } finally {
      await h.close();
    }
  });
}

test('headless, ExternalName, other-proxy and headless-labelled services and non-IPv4 slices are ignored', async () => {
  const h = await setup({
    prepare: (s) => {
      s.apply(rawSvc('default', 'web'));
      s.apply(rawSvc('default', 'headless', { clusterIP: 'None' }));
      s.apply(rawSvc('default', 'ext', { type: 'ExternalName' }));
      s.apply(rawSvc('default', 'other', { clusterIP: '198.18.100.6', labels: { 'service.kubernetes.io/service-proxy-name': 'other-proxy' } }));
      s.apply(rawSvc('default', 'hl', { clusterIP: '198.18.100.7', labels: { 'service.kubernetes.io/headless': '' } }));
      s.apply(rawSlice('default', 'headless-x', 'headless', ['198.18.1.20'], { labels: { 'service.kubernetes.io/headless': '' } }));
      s.apply(rawSlice('default', 'web-v6', 'web', ['fd00::1'], { addressType: 'IPv6' }));
      s.apply(rawSlice('default', 'other-x', 'other', ['198.18.1.21'], { labels: { 'service.kubernetes.io/service-proxy-name': 'other-proxy' } }));
    },
  });
  try {
    assert.deepEqual(h.names(), ['add Service default/web', 'synced kubernetes']);
    h.events.length = 0;
    await waitFor('watches', () => h.server.watchCount() === 3);
    // A service that becomes another proxy's is deleted; back again, added.
    h.server.apply(rawSvc('default', 'web', { labels: { 'service.kubernetes.io/service-proxy-name': 'other-proxy' } }));
    await waitFor('delete', () => h.names().includes('delete Service default/web'));
    h.server.apply(rawSvc('default', 'web'));
    await waitFor('add', () => h.names().includes('add Service default/web'));
    h.server.apply(rawSvc('default', 'ext2', { type: 'ExternalName' }));
    h.server.apply(rawSvc('default', 'headless2', { clusterIP: 'None' }));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(h.names(), ['delete Service default/web', 'add Service default/web']);
  } finally {
    await h.close();
  }
});

test('the API server filters by label, as upstream\'s informers ask it to: labelled objects are never sent', async () => {
  const h = await setup({
    prepare: (s) => {
      s.apply(rawSvc('default', 'web'));
      s.apply(rawSlice('default', 'web-1', 'web', ['198.18.1.10']));
      s.apply(rawSvc('default', 'other', { clusterIP: '198.18.100.6', labels: { 'service.kubernetes.io/service-proxy-name': 'other-proxy' } }));
      s.apply(rawSlice('default', 'other-1', 'other', ['198.18.1.21'], { labels: { 'service.kubernetes.io/service-proxy-name': 'other-proxy' } }));
      s.apply(rawSvc('default', 'hl', { clusterIP: '198.18.100.7', labels: { 'service.kubernetes.io/headless': '' } }));
      s.apply(rawSlice('default', 'hl-1', 'hl', ['198.18.1.22'], { labels: { 'service.kubernetes.io/headless': '' } }));
    },
  });
  try {
    const want = '!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name';
    for (const path of ['/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices']) {
      const reqs = h.server.requests.filter((r) => r.startsWith(`GET ${path}?`) || r === `GET ${path}`);
      assert.ok(reqs.length > 0, `requests to ${path}`);
      for (const r of reqs) assert.equal(new URL(r.slice(4), 'https://x').searchParams.get('labelSelector'), want, `${r} carries the label selector`);
    }
    await waitFor('watches', () => h.server.watchCount() === 3);
    // Gaining the label: the server turns the update into DELETED, the source into a delete.
    h.server.apply(rawSlice('default', 'web-1', 'web', ['198.18.1.10'], { labels: { 'service.kubernetes.io/headless': '' } }));
    await waitFor('delete of the slice', () => h.names().includes('delete EndpointSlice default/web-1'));
    // Losing it again: ADDED.
    h.server.apply(rawSlice('default', 'web-1', 'web', ['198.18.1.11']));
    await waitFor('add of the slice', () => h.names().filter((n) => n === 'add EndpointSlice default/web-1').length === 2);
    h.server.apply(rawSvc('default', 'other', { clusterIP: '198.18.100.6', port: 81, labels: { 'service.kubernetes.io/service-proxy-name': 'other-proxy' } }));
    h.server.apply(rawSvc('default', 'web', { port: 82 }));
    await waitFor('web update', () => h.names().includes('update Service default/web'));
    const labelled = h.server.sent.filter((x) => /\/(other|hl)(-1)?$/.test(x));
    assert.deepEqual(labelled, [], 'objects with the proxy-name or headless label never left the server');
    assert.ok(h.server.sent.includes('Service default/web'));
  } finally {
    await h.close();
  }
});

test('a service labelled with this proxy name is used', async () => {
  const h = await setup({
    source: { proxyName: 'kproxy' },
    prepare: (s) => {
      s.apply(rawSvc('default', 'mine', { labels: { 'service.kubernetes.io/service-proxy-name': 'kproxy' } }));
      s.apply(rawSvc('default', 'theirs', { clusterIP: '198.18.100.8', labels: { 'service.kubernetes.io/service-proxy-name': 'other' } }));
    },
  });
  try {
    assert.deepEqual(h.names(), ['add Service default/mine', 'synced kubernetes']);
  } finally {
    await h.close();
  }
});

test('an object that fails conversion is reported with where and skipped', async () => {
  const h = await setup({
    prepare: (s) => {
      s.apply(rawSvc('default', 'bad', { clusterIP: 'not-an-ip' }));
      s.apply(rawSvc('default', 'good'));
    },
  });
  try {
    assert.deepEqual(h.names(), ['add Service default/good', 'synced kubernetes']);
    assert.ok(h.problems.length > 0);
    assert.ok(h.problems.every((p) => p.where.startsWith('Service default/bad')), JSON.stringify(h.problems));
  } finally {
    await h.close();
  }
});

test('bad credentials: a clear 401 error, retries, and recovery once accepted', async () => {
  const h = await setup({ prepare: seed, token: 'wrong-token', waitSynced: false });
  try {
    await waitFor('retries', () => h.server.unauthorized >= 6, 3000);
    assert.equal(h.source.isSynced, false);
    assert.deepEqual(h.names(), []);
    const auth = h.problems.filter((p) => p.code === KUBERNETES_PROBLEM.AUTH);
    assert.ok(auth.length >= 1 && auth.length <= 3, JSON.stringify(h.problems)); // once per resource, not per retry
    assert.match(auth[0]?.message ?? '', /401 Unauthorized: the credentials .* were rejected/);
    assert.ok(h.log.lines.some((l) => l.startsWith('W') && l.includes('401') && l.includes('retrying')), h.log.lines.join('\n'));
    // The server starts accepting the token: the source syncs without a restart.
    h.server.token = 'wrong-token';
    await waitFor('synced', () => h.source.isSynced, 3000);
    assert.equal(h.names().length, 5);
  } finally {
    await h.close();
  }
});

test('an unreachable server: a clear error, and retries with backoff', async () => {
  const server = await TestApiServer.start();
  seed(server);
  const port = server.port;
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-k8s-'));
  const kubeconfig = server.writeKubeconfig(join(dir, 'kubeconfig'));
  await server.close();
  const problems: SourceProblem[] = [];
  const events: SourceEvent[] = [];
  const log = memoryLogger(10);
  const source = new KubernetesSource({ kubeconfig, nodeName: 'n1', onProblem: (p) => problems.push(p), log, retryBaseMs: 50, retryMaxMs: 200 });
  try {
    await source.start((e) => events.push(e));
    await waitFor('problem', () => problems.length > 0, 3000);
    assert.equal(problems[0]?.code, KUBERNETES_PROBLEM.CONNECTION);
    assert.match(problems[0]?.message ?? '', new RegExp(`127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
    await waitFor('retries', () => log.lines.filter((l) => l.includes('retrying')).length >= 6, 3000);
    assert.deepEqual(events, []);
  } finally {
    await source.close();
  }
});

test('a missing kubeconfig file fails start with a clear error', async () => {
  const source = new KubernetesSource({ kubeconfig: '/nonexistent/kubeconfig', nodeName: 'n1', onProblem: () => undefined, log: memoryLogger() });
  await assert.rejects(source.start(() => undefined), (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.match(err.message, /--kubeconfig \/nonexistent\/kubeconfig: .*ENOENT/);
    return true;
  });
  await source.close();
});

test('no --kubeconfig, no --master and not in a cluster: start fails with a clear error', async () => {
  const saved = process.env.KUBERNETES_SERVICE_HOST;
  delete process.env.KUBERNETES_SERVICE_HOST;
  try {
    const source = new KubernetesSource({ nodeName: 'n1', onProblem: () => undefined, log: memoryLogger() });
    await assert.rejects(source.start(() => undefined), /neither --kubeconfig nor --master was given, and this is not running in a cluster/);
    await source.close();
  } finally {
    if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
  }
});

test('an untrusted server certificate: a clear TLS error, and retries', async () => {
  const h = await setup({ prepare: seed, waitSynced: false });
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-k8s-'));
  // Trusting only the server's own (CA-issued) certificate: no chain to a trusted root.
  const { testCerts } = await import('../../helpers/apiserver.js');
  const kubeconfig = h.server.writeKubeconfig(join(dir, 'kubeconfig'), { caPem: testCerts().certPem });
  const problems: SourceProblem[] = [];
  const log = memoryLogger(10);
  const source = new KubernetesSource({ kubeconfig, nodeName: 'n1', onProblem: (p) => problems.push(p), log, retryBaseMs: 50, retryMaxMs: 200 });
  try {
    await source.start(() => undefined);
    await waitFor('problem', () => problems.length > 0, 3000);
    assert.equal(problems[0]?.code, KUBERNETES_PROBLEM.CONNECTION);
    assert.match(problems[0]?.message ?? '', /certificate/i);
    await waitFor('retries', () => log.lines.filter((l) => l.includes('retrying')).length >= 6, 3000);
  } finally {
    await source.close();
    await h.close();
  }
});

test('--master alone: no credentials, so the server says 401 (reported, retried)', async () => {
  const server = await TestApiServer.start();
  const problems: SourceProblem[] = [];
  // Without a kubeconfig there is no CA either: the test CA is untrusted, so the TLS handshake
  // fails (a trusted server would answer 401); either way a clear, retried error.
  const source = new KubernetesSource({ master: server.url, nodeName: 'n1', onProblem: (p) => problems.push(p), log: memoryLogger(), retryBaseMs: 50, retryMaxMs: 200 });
  try {
    await source.start(() => undefined);
    await waitFor('problem', () => problems.length > 0, 3000);
    assert.match(problems[0]?.message ?? '', new RegExp(`reading \\w+ from the API server ${server.url.replace(/\./g, '\\.')}: .*(certificate|401)`, 'i'));
  } finally {
    await source.close();
    await server.close();
  }
});

test('--master overrides the kubeconfig server', async () => {
  const h = await setup({ prepare: seed });
  const other = await TestApiServer.start();
  other.apply(rawSvc('default', 'only-on-other'));
  const events: SourceEvent[] = [];
  const source = new KubernetesSource({ kubeconfig: h.kubeconfig, master: other.url, nodeName: 'n1', onProblem: () => undefined, log: memoryLogger() });
  try {
    await source.start((e) => events.push(e));
    await waitFor('synced', () => source.isSynced);
    assert.deepEqual(events.map(describe), ['add Service default/only-on-other', 'synced kubernetes']);
  } finally {
    await source.close();
    await other.close();
    await h.close();
  }
});

test('close() is idempotent, stops events, and leaves no handles (the process exits)', async () => {
  const h = await setup({ prepare: seed });
  await h.source.close();
  await h.source.close();
  h.events.length = 0;
  h.server.apply(rawSvc('default', 'after-close'));
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(h.events, []);

  // In a child process: start, sync, close; the process must then exit by itself.
  const modUrl = new URL('../../../src/sources/kubernetes/source.js', import.meta.url).href;
  const logUrl = new URL('../../../src/observability/log.js', import.meta.url).href;
  const script = join(mkdtempSync(join(tmpdir(), 'kproxy-k8s-')), 'child.mjs');
  writeFileSync(script, `
    import { KubernetesSource } from ${JSON.stringify(modUrl)};
    import { memoryLogger } from ${JSON.stringify(logUrl)};
    const s = new KubernetesSource({ kubeconfig: ${JSON.stringify(h.kubeconfig)}, nodeName: 'n1', onProblem: () => {}, log: memoryLogger() });
    let n = 0;
    await s.start((e) => { n++; if (e.kind === 'synced') { console.log('synced ' + n); s.close().then(() => console.log('closed')); } });
  `);
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('timeout');
    }, 30_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c ?? -1);
    });
  });
  await h.server.close();
  assert.equal(code, 0, `child output: ${out}`);
  assert.match(out, /synced 6\nclosed/);
});

/** The RBAC (apiGroup/resource:verb) a request to the test API server needs. */
function accessOf(request: string): string {
  const [method = '', target = ''] = request.split(' ');
  const url = new URL(target, 'https://x');
  const m = /^\/(?:api\/v1|apis\/([^/]+)\/v1)(?:\/namespaces\/[^/]+)?\/([^/]+)$/.exec(url.pathname);
  assert.ok(m, `a collection path: ${request}`);
  const verb = method === 'POST' ? 'create' : url.searchParams.get('watch') === 'true' ? 'watch' : 'list';
  return `${m[1] ?? ''}/${m[2] ?? ''}:${verb}`;
}

test('KUBERNETES_SOURCE_ACCESS is exactly what the source and its event recorder ask the API server for', async () => {
  const h = await setup({ prepare: seed });
  try {
    await waitFor('watches', () => h.server.watchCount() === 3);
    h.source.recorder.eventf('Normal', 'Starting', 'StartKubeProxy', '');
    await h.source.recorder.flush();
    const used = new Set(h.server.requests.map(accessOf));
    const declared = new Set(KUBERNETES_SOURCE_ACCESS.flatMap((a) => a.verbs.map((v) => `${a.apiGroup}/${a.resource}:${v}`)));
    assert.deepEqual([...used].sort(), [...declared].sort());
  } finally {
    await h.close();
  }
});

test('events: "Starting" regarding this Node, as upstream\'s birth cry, in events.k8s.io/v1', async () => {
  const h = await setup({ prepare: seed });
  try {
    const t0 = Date.now();
    h.source.recorder.eventf('Normal', 'Starting', 'StartKubeProxy', '');
    h.source.recorder.eventf('Warning', 'FailedToSetConntrack', 'StartKubeProxy', 'x'.repeat(2000));
    await h.source.recorder.flush();
    assert.equal(h.server.events.length, 2);
    const [first, second] = h.server.events;
    assert.equal(first?.apiVersion, 'events.k8s.io/v1');
    assert.equal(first?.namespace, 'default');
    const b = first?.body ?? {};
    assert.equal(b.reason, 'Starting');
    assert.equal(b.action, 'StartKubeProxy');
    assert.equal(b.type, 'Normal');
    assert.equal(b.note, undefined);
    assert.equal(b.reportingController, 'kproxy');
    assert.match(String(b.reportingInstance), /^kproxy-/);
    assert.deepEqual(b.regarding, { kind: 'Node', name: 'n1', uid: 'n1' });
    assert.match(String(b.eventTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(Math.abs(Date.parse(String(b.eventTime)) - t0) < 5000);
    const name1 = String((b.metadata as Obj).name);
    const name2 = String((second?.body.metadata as Obj).name);
    assert.match(name1, /^n1\.[0-9a-f]+$/);
    assert.notEqual(name1, name2, 'event names are unique');
    assert.equal(second?.body.type, 'Warning');
    assert.equal(String(second?.body.note).length, 1024, 'the note is cut to the API\'s 1 kB');
  } finally {
    await h.close();
  }
});

test('events: a refused event is retried, then logged; it never stops the source', async () => {
  const h = await setup({ prepare: seed, source: { eventAttempts: 3, eventRetryMs: 20 } });
  try {
    h.server.token = 'rotated';
    const before = h.server.unauthorized;
    h.source.recorder.eventf('Normal', 'Starting', 'StartKubeProxy', '');
    await h.source.recorder.flush();
    const posts = h.server.requests.filter((r) => r.startsWith('POST '));
    assert.equal(posts.length, 3, 'three attempts');
    assert.ok(h.server.unauthorized - before >= 3);
    assert.equal(h.server.events.length, 0);
    assert.ok(h.log.lines.some((l) => /could not record an event/.test(l) && /Starting/.test(l) && /401|Unauthorized/.test(l)), h.log.lines.join('\n'));
    assert.ok(h.source.isSynced);
  } finally {
    await h.close();
  }
});
