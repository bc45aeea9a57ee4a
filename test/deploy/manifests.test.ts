/**
 * deploy/: the manifests and the Dockerfile are checked against what kproxy actually is — the
 * flags its CLI accepts, the configuration its loader accepts, the API access its Kubernetes
 * source requests, the files its image must contain.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYAML, parseAllDocuments } from 'yaml';
import { decodeConfig } from '../../src/config/file.js';
import { ErrorList, validateConfig } from '../../src/config/validation.js';
import { KUBERNETES_SOURCE_ACCESS } from '../../src/sources/kubernetes/source.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'kproxy.js');
const MANIFEST = join(ROOT, 'deploy', 'kproxy.yaml');
const DOCKERFILE = join(ROOT, 'deploy', 'Dockerfile');
const DOCKERIGNORE = join(ROOT, 'deploy', 'Dockerfile.dockerignore');

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Follows a path of keys and indexes; fails the test naming the path when a step is missing. */
function at(v: unknown, ...path: (string | number)[]): unknown {
  let cur = v;
  const done: (string | number)[] = [];
  for (const p of path) {
    done.push(p);
    if (typeof p === 'number') {
      assert.ok(Array.isArray(cur), `${done.join('.')}: expected a list`);
      cur = cur[p];
    } else {
      assert.ok(isObj(cur), `${done.join('.')}: expected an object`);
      cur = cur[p];
    }
    assert.notEqual(cur, undefined, `${done.join('.')} is missing`);
  }
  return cur;
}

function list(v: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(v), `${what}: expected a list`);
  return v;
}

function loadManifests(): Obj[] {
  const docs = parseAllDocuments(readFileSync(MANIFEST, 'utf8'));
  const out: Obj[] = [];
  for (const [i, d] of docs.entries()) {
    assert.deepEqual(d.errors.map((e) => e.message), [], `document ${i} of deploy/kproxy.yaml does not parse`);
    const js: unknown = d.toJS();
    if (js === null || js === undefined) continue;
    assert.ok(isObj(js), `document ${i} is not an object`);
    out.push(js);
  }
  return out;
}

function one(docs: readonly Obj[], kind: string, name: string): Obj {
  const found = docs.filter((d) => d.kind === kind && at(d, 'metadata', 'name') === name);
  assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0]!;
}

const docs = loadManifests();
const daemonSet = one(docs, 'DaemonSet', 'kproxy');
const podSpec = at(daemonSet, 'spec', 'template', 'spec') as Obj;
const containers = list(podSpec.containers, 'containers') as Obj[];
const container = containers[0]!;
const command = list(container.command, 'command').map(String);

test('deploy/kproxy.yaml: the objects, their API versions, names and namespaces', () => {
  const described = docs.map((d) => {
    const md = at(d, 'metadata') as Obj;
    return `${String(d.apiVersion)} ${String(d.kind)} ${md.namespace === undefined ? '' : `${String(md.namespace)}/`}${String(md.name)}`;
  });
  assert.deepEqual(described.sort(), [
    'apps/v1 DaemonSet kube-system/kproxy',
    'rbac.authorization.k8s.io/v1 ClusterRole system:kproxy',
    'rbac.authorization.k8s.io/v1 ClusterRoleBinding system:kproxy',
    'v1 ConfigMap kube-system/kproxy',
    'v1 ServiceAccount kube-system/kproxy',
  ]);
});

test('the ClusterRoleBinding gives the ClusterRole to the DaemonSet\'s service account', () => {
  const binding = one(docs, 'ClusterRoleBinding', 'system:kproxy');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:kproxy' });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'kproxy', namespace: 'kube-system' }]);
  assert.equal(podSpec.serviceAccountName, 'kproxy');
  assert.notEqual(podSpec.automountServiceAccountToken, false, 'in-cluster configuration needs the service-account token');
});

test('the DaemonSet: host network, node-critical, on every node, rolling updates', () => {
  assert.equal(podSpec.hostNetwork, true);
  assert.equal(podSpec.dnsPolicy, 'ClusterFirstWithHostNet');
  assert.equal(podSpec.priorityClassName, 'system-node-critical');
  assert.deepEqual(podSpec.tolerations, [{ operator: 'Exists' }], 'tolerates every taint, as kube-proxy does');
  assert.deepEqual(at(daemonSet, 'spec', 'updateStrategy'), { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } });
  const selector = at(daemonSet, 'spec', 'selector', 'matchLabels') as Obj;
  const labels = at(daemonSet, 'spec', 'template', 'metadata', 'labels') as Obj;
  for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `the pod template carries selector label ${k}`);
  assert.equal(containers.length, 1);
  assert.equal(at(container, 'securityContext', 'privileged'), true);
  assert.ok(isObj(at(container, 'resources', 'requests')), 'resource requests are set');
});

test('the DaemonSet: probes hit /livez and /healthz on the healthz port', () => {
  assert.deepEqual({ path: at(container, 'livenessProbe', 'httpGet', 'path'), port: at(container, 'livenessProbe', 'httpGet', 'port') }, { path: '/livez', port: 10256 });
  assert.deepEqual({ path: at(container, 'readinessProbe', 'httpGet', 'path'), port: at(container, 'readinessProbe', 'httpGet', 'port') }, { path: '/healthz', port: 10256 });
  // The port kproxy serves them on comes from the ConfigMap: they must agree.
  const cfg = parseYAML(String(at(one(docs, 'ConfigMap', 'kproxy'), 'data', 'config.conf'))) as Obj;
  const healthz = cfg.healthzBindAddress === undefined ? '0.0.0.0:10256' : String(cfg.healthzBindAddress);
  assert.ok(healthz.endsWith(':10256'), `healthzBindAddress ${healthz} serves the probed port`);
  assert.ok(['0.0.0.0', '::', '[::]'].includes(healthz.slice(0, healthz.lastIndexOf(':'))), 'healthz listens on every address (kubelet probes the node IP)');
});

test('the DaemonSet: config, xtables lock and kernel modules are mounted', () => {
  const mounts = new Map((list(container.volumeMounts, 'volumeMounts') as Obj[]).map((m) => [String(m.mountPath), m]));
  const volumes = new Map((list(podSpec.volumes, 'volumes') as Obj[]).map((v) => [String(v.name), v]));
  const volumeAt = (path: string): Obj => {
    const m = mounts.get(path);
    assert.ok(m, `a volume is mounted at ${path}`);
    const v = volumes.get(String(m.name));
    assert.ok(v, `volume ${String(m.name)} is defined`);
    return v;
  };
  assert.deepEqual(volumeAt('/run/xtables.lock').hostPath, { path: '/run/xtables.lock', type: 'FileOrCreate' });
  assert.equal(at(volumeAt('/lib/modules'), 'hostPath', 'path'), '/lib/modules');
  assert.equal(mounts.get('/lib/modules')!.readOnly, true);
  assert.notEqual(mounts.get('/run/xtables.lock')!.readOnly, true, 'iptables takes the lock by writing it');
  const configFlag = command.find((a) => a.startsWith('--config='));
  assert.ok(configFlag, 'the command passes --config=PATH');
  const configPath = configFlag.slice('--config='.length);
  const configDir = configPath.slice(0, configPath.lastIndexOf('/'));
  assert.equal(at(volumeAt(configDir), 'configMap', 'name'), 'kproxy');
  assert.ok(isObj(at(one(docs, 'ConfigMap', 'kproxy'), 'data')) && typeof at(one(docs, 'ConfigMap', 'kproxy'), 'data', configPath.slice(configDir.length + 1)) === 'string',
    `the ConfigMap has the key ${configPath.slice(configDir.length + 1)} that --config reads`);
});

test('the DaemonSet\'s command uses only flags kproxy accepts, and runs the image\'s launcher', () => {
  assert.deepEqual(command.slice(0, 2), ['node', '/app/bin/kproxy.js']);
  const help = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  const known = new Set([...help.stdout.matchAll(/^\s+(?:-\w, )?(--[a-z0-9-]+)/gm)].map((m) => m[1]!));
  assert.ok(known.has('--config') && known.has('--hostname-override'), 'help lists the flags');
  for (const a of command.slice(2)) {
    assert.ok(a.startsWith('--'), `argument ${a} is a --flag=value`);
    const flag = a.includes('=') ? a.slice(0, a.indexOf('=')) : a;
    assert.ok(known.has(flag), `kproxy --help lists ${flag}`);
  }
  const nodeName = (list(container.env, 'env') as Obj[]).find((e) => e.name === 'NODE_NAME');
  assert.equal(at(nodeName, 'valueFrom', 'fieldRef', 'fieldPath'), 'spec.nodeName');
  assert.ok(command.includes('--hostname-override=$(NODE_NAME)'));
});

test('the exact command line, with the ConfigMap as its file, is accepted by kproxy\'s CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-deploy-'));
  try {
    const cm = one(docs, 'ConfigMap', 'kproxy');
    writeFileSync(join(dir, 'config.conf'), String(at(cm, 'data', 'config.conf')));
    const args = command.slice(2).map((a) => a
      .replace(/^--config=.*$/, `--config=${join(dir, 'config.conf')}`)
      .replace('$(NODE_NAME)', 'Worker-1'));
    const r = spawnSync(process.execPath, [BIN, ...args, `--write-config-to=${join(dir, 'effective.yaml')}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const effective = parseYAML(readFileSync(join(dir, 'effective.yaml'), 'utf8')) as Obj;
    assert.equal(effective.mode, 'iptables');
    assert.equal(effective.hostnameOverride, 'worker-1');
    assert.equal(effective.metricsBindAddress, '0.0.0.0:10249');
    assert.equal(effective.healthzBindAddress, '0.0.0.0:10256');
    assert.deepEqual(effective.iptables, { ...(effective.iptables as Obj), syncPeriod: '30s', minSyncPeriod: '1s' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the ConfigMap\'s config.conf is a KubeProxyConfiguration kproxy\'s loader accepts', () => {
  const text = String(at(one(docs, 'ConfigMap', 'kproxy'), 'data', 'config.conf'));
  const raw = parseYAML(text) as unknown;
  assert.equal(at(raw, 'apiVersion'), 'kubeproxy.config.k8s.io/v1alpha1');
  assert.equal(at(raw, 'kind'), 'KubeProxyConfiguration');
  const decoded = decodeConfig(raw);
  assert.deepEqual(decoded.errors, []);
  const errs = new ErrorList();
  const c = validateConfig(decoded.values, errs);
  assert.deepEqual(errs.errors, []);
  assert.equal(c.mode, 'iptables');
  assert.deepEqual(c.clusterCIDRs, ['10.244.0.0/16']);
  assert.deepEqual(c.metricsBindAddress, { host: '0.0.0.0', port: 10249 });
  assert.equal(c.syncPeriodMs, 30_000);
  assert.equal(c.minSyncPeriodMs, 1_000);
  assert.equal(c.kubeconfig, undefined, 'an empty clientConnection.kubeconfig means in-cluster');
  assert.equal(decoded.values.get('hostnameOverride'), undefined, 'the node name comes from --hostname-override=$(NODE_NAME), not the shared ConfigMap');
});

/** Every (apiGroup, resource, verb) a ClusterRole's rules grant; wildcards and extras are refused. */
function grants(role: Obj): Set<string> {
  const out = new Set<string>();
  for (const [i, rule] of (list(role.rules, 'rules') as Obj[]).entries()) {
    assert.equal(rule.resourceNames, undefined, `rule ${i}: no resourceNames (the source reads whole collections)`);
    assert.equal(rule.nonResourceURLs, undefined, `rule ${i}: no nonResourceURLs`);
    for (const g of list(rule.apiGroups, `rule ${i} apiGroups`)) {
      for (const r of list(rule.resources, `rule ${i} resources`)) {
        for (const v of list(rule.verbs, `rule ${i} verbs`)) {
          for (const x of [g, r, v]) assert.ok(typeof x === 'string' && x !== '*', `rule ${i}: no wildcards (${String(x)})`);
          out.add(`${String(g)}/${String(r)}:${String(v)}`);
        }
      }
    }
  }
  return out;
}

test('RBAC: the ClusterRole grants exactly what the Kubernetes source and its event recorder request', () => {
  const role = one(docs, 'ClusterRole', 'system:kproxy');
  const granted = grants(role);
  const needed = new Set<string>();
  assert.ok(KUBERNETES_SOURCE_ACCESS.length > 0);
  for (const a of KUBERNETES_SOURCE_ACCESS) for (const v of a.verbs) needed.add(`${a.apiGroup}/${a.resource}:${v}`);
  const missing = [...needed].filter((g) => !granted.has(g));
  assert.deepEqual(missing, [], 'the source requests access the ClusterRole does not grant');
  const extra = [...granted].filter((g) => !needed.has(g));
  assert.deepEqual(extra, [], 'the ClusterRole grants more than the source requests');
  // The source must at least read what any kube-proxy reads, and record events as upstream does.
  for (const g of ['/services:list', '/services:watch', 'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch', '/nodes:list', '/nodes:watch', 'events.k8s.io/events:create']) {
    assert.ok(needed.has(g), `the source requests ${g}`);
  }
});

/** Dockerfile instructions, continuation lines joined and comments dropped, grouped by stage. */
function dockerStages(text: string): { from: string; name: string | undefined; instructions: string[] }[] {
  const lines: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (cur === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      cur += `${line.slice(0, -1).trim()} `;
      continue;
    }
    lines.push((cur + line).trim());
    cur = '';
  }
  const stages: { from: string; name: string | undefined; instructions: string[] }[] = [];
  for (const l of lines) {
    const m = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$/i.exec(l);
    if (m) stages.push({ from: m[1]!, name: m[2], instructions: [] });
    else if (stages.length > 0) stages[stages.length - 1]!.instructions.push(l);
  }
  return stages;
}

test('deploy/Dockerfile: builds with devDependencies, runs with production ones and the kernel tools', () => {
  const text = readFileSync(DOCKERFILE, 'utf8');
  const args = new Map([...text.matchAll(/^ARG\s+(\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const stages = dockerStages(text);
  assert.equal(stages.length, 2, 'two stages: build and runtime');
  const [build, runtime] = stages as [typeof stages[0], typeof stages[0]];
  const nodeMajor = Number(/^>=(\d+)/.exec(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).engines.node as string)?.[1]);
  for (const s of stages) {
    const image = s.from.replace(/\$\{(\w+)\}/g, (_, n: string) => args.get(n) ?? '');
    assert.match(image, /^node:\d+(\.\d+)*-(bookworm|bullseye|trixie)-slim$/, `${s.from}: a Debian slim Node base image`);
    assert.ok(Number(/^node:(\d+)/.exec(image)![1]) >= nodeMajor, `${image} satisfies engines.node`);
  }
  assert.equal(build.name, 'build');
  const b = build.instructions.join('\n');
  assert.match(b, /^RUN npm ci( --ignore-scripts)?$/m, 'the build stage installs devDependencies');
  assert.match(b, /^RUN npm run build$/m);
  assert.ok(b.indexOf('npm ci') < b.indexOf('COPY src') && b.indexOf('COPY src') < b.indexOf('npm run build'), 'dependencies, then sources, then build');

  const r = runtime.instructions.join('\n');
  assert.match(r, /^RUN npm ci --omit=dev --ignore-scripts\b/m, 'the runtime stage installs production dependencies without running prepare (tsc)');
  assert.doesNotMatch(r, /npm run build|tsc/);
  const apt = runtime.instructions.find((i) => /apt-get install/.test(i));
  assert.ok(apt, 'the runtime stage installs packages with apt-get');
  const words = new Set(apt.split(/\s+/));
  for (const p of ['iptables', 'nftables', 'ipset', 'ipvsadm', 'conntrack', 'iproute2', 'procps']) assert.ok(words.has(p), `apt-get installs ${p}`);
  assert.match(apt, /apt-get update/);
  assert.match(apt, /rm -rf \/var\/lib\/apt\/lists/);
  const copies = runtime.instructions.filter((i) => i.startsWith('COPY'));
  assert.ok(copies.some((c) => /^COPY --from=build \S*\/dist \.?\/?(\/app\/)?dist$/.test(c)), 'the compiled dist/ comes from the build stage');
  assert.ok(copies.some((c) => /^COPY (--from=build )?\S*bin \.?\/?(\/app\/)?bin$/.test(c)), 'bin/ is copied');
  assert.ok(copies.some((c) => /^COPY package\.json package-lock\.json /.test(c)), 'package.json and the lockfile are copied');
  assert.ok(runtime.instructions.includes('WORKDIR /app'));
  const entrypoint = runtime.instructions.find((i) => i.startsWith('ENTRYPOINT'));
  assert.deepEqual(JSON.parse(entrypoint!.slice('ENTRYPOINT'.length)), ['node', '/app/bin/kproxy.js']);
  // The entrypoint is package.json's own bin, under the WORKDIR the package was installed in.
  const pkgBin = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.kproxy;
  assert.equal(`/app/${String(pkgBin)}`, '/app/bin/kproxy.js', 'ENTRYPOINT runs package.json\'s bin.kproxy');
  assert.deepEqual(command.slice(0, 2), ['node', '/app/bin/kproxy.js'], 'the DaemonSet runs the image\'s launcher');
  assert.ok(!runtime.instructions.some((i) => /^USER\s/.test(i)), 'runs as root: it programs netfilter');
});

test('deploy/Dockerfile: everything it copies from the context exists and is not ignored', () => {
  const ignored = readFileSync(DOCKERIGNORE, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  for (const must of ['node_modules', 'dist', '.git']) assert.ok(ignored.includes(must), `${must} is kept out of the build context`);
  const copied = dockerStages(readFileSync(DOCKERFILE, 'utf8'))
    .flatMap((s) => s.instructions)
    .filter((i) => i.startsWith('COPY ') && !i.includes('--from='))
    .flatMap((i) => i.split(/\s+/).slice(1, -1));
  assert.ok(copied.length > 0);
  for (const p of copied) {
    assert.ok(existsSync(join(ROOT, p)), `${p} exists in the repository`);
    assert.ok(!ignored.some((x) => p === x || p.startsWith(`${x}/`)), `${p} is not in Dockerfile.dockerignore`);
  }
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'bin']) assert.ok(copied.includes(needed), `the build copies ${needed}`);
  // bin/kproxy.js loads ../dist/src/cli/main.js: the build must produce it where the launcher looks.
  assert.match(readFileSync(BIN, 'utf8'), /\.\.\/dist\/src\/cli\/main\.js/);
});
