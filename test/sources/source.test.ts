/**
 * The manifest source against real files in a temp folder: initial load, edits picked up by
 * fs.watch (and by the stat poll alone), broken edits that never drop services, deletions,
 * duplicates, problems reported once, and a close() that leaves nothing running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KproxyError } from '../../src/core/errors.js';
import type { SourceEvent, SourceProblem } from '../../src/core/events.js';
import type { ApiObject } from '../../src/core/objects.js';
import { PROBLEM } from '../../src/sources/convert.js';
import { ManifestSource, type ManifestSourceOptions } from '../../src/sources/files/source.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function service(name: string, ip: string, pods: string[], ns = 'e2e'): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}}
spec:
  clusterIP: ${ip}
  ports: [{name: http, port: 80, targetPort: 9401}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}-1
  namespace: ${ns}
  labels: {kubernetes.io/service-name: ${name}}
addressType: IPv4
ports: [{name: http, port: 9401}]
endpoints:
${pods.map((p) => `- addresses: [${p}]`).join('\n')}
`;
}

function idOf(o: ApiObject): string {
  return o.kind === 'Node' ? o.name : o.id;
}

function summary(e: SourceEvent): string {
  return e.kind === 'synced' ? `synced ${e.source}` : `${e.type} ${e.kind} ${idOf(e.object)}`;
}

function addressesOf(o: ApiObject | undefined): string[] {
  assert.ok(o?.kind === 'EndpointSlice');
  return o.endpoints.map((e) => e.addresses[0] ?? '');
}

/** Records events and problems; lets a test wait for them. */
class Recorder {
  readonly events: SourceEvent[] = [];
  readonly problems: SourceProblem[] = [];
  private seen = 0;
  readonly sink = (e: SourceEvent): void => { this.events.push(e); };
  readonly onProblem = (p: SourceProblem): void => { this.problems.push(p); };

  /** The events since the last take. */
  take(): SourceEvent[] {
    const out = this.events.slice(this.seen);
    this.seen = this.events.length;
    return out;
  }
  /** Waits until n new events arrived; returns them (and how long it took). */
  async next(n: number, what: string, timeoutMs = 1000): Promise<{ events: SourceEvent[]; ms: number }> {
    const t0 = Date.now();
    while (this.events.length - this.seen < n) {
      if (Date.now() - t0 > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; got ${JSON.stringify(this.take().map(summary))}`);
      await sleep(5);
    }
    const ms = Date.now() - t0;
    await sleep(30); // let a burst finish, so that extra events show up in the assertion
    return { events: this.take(), ms };
  }
  async problem(pred: (p: SourceProblem) => boolean, what: string, timeoutMs = 1500): Promise<SourceProblem> {
    const t0 = Date.now();
    for (;;) {
      const p = this.problems.find(pred);
      if (p) return p;
      if (Date.now() - t0 > timeoutMs) assert.fail(`timed out waiting for ${what}; problems: ${JSON.stringify(this.problems, null, 2)}`);
      await sleep(5);
    }
  }
  /** Asserts that nothing happens for a while (longer than a debounce plus a poll). */
  async quiet(ms = 700): Promise<void> {
    await sleep(ms);
    assert.deepEqual(this.take().map(summary), []);
  }
}

async function withSource(
  setup: (dir: string) => void,
  body: (ctx: { dir: string; rec: Recorder; src: ManifestSource }) => Promise<void>,
  opts: Partial<Omit<ManifestSourceOptions, 'path'>> & { path?: (dir: string) => string } = {},
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-manifests-'));
  const rec = new Recorder();
  const { path, ...rest } = opts;
  const src = new ManifestSource({ path: path ? path(dir) : dir, nodeName: 'n1', onProblem: rec.onProblem, ...rest });
  try {
    setup(dir);
    await src.start(rec.sink);
    await body({ dir, rec, src });
  } finally {
    await src.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('initial load: a folder, recursively, in sorted order; other files, dotfiles, other Nodes and unknown kinds left out', async () => {
  await withSource((dir) => {
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, '.git'));
    writeFileSync(join(dir, 'b.yaml'), service('beta', '10.96.0.2', ['10.1.0.1']));
    writeFileSync(join(dir, 'a', 'x.yml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: ax, namespace: shop}\nspec: {clusterIP: 10.96.0.3, ports: [{port: 80}]}\n');
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'aj', namespace: 'shop' }, spec: { ports: [{ port: 81 }] } }));
    writeFileSync(join(dir, '.hidden.yaml'), service('hidden', '10.96.0.4', []));
    writeFileSync(join(dir, '.git', 'c.yaml'), service('git', '10.96.0.5', []));
    writeFileSync(join(dir, 'notes.txt'), 'kind: Service\n');
    writeFileSync(join(dir, 'c.yaml'), [
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n',
      'apiVersion: v1\nkind: Node\nmetadata: {name: n0}\n',
      'apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDR: 10.244.1.0/24}\n',
    ].join('---\n'));
  }, async ({ dir, rec }) => {
    const events = rec.take();
    assert.deepEqual(events.map(summary), [
      'add Service shop/aj',
      'add Service shop/ax',
      'add Service e2e/beta',
      'add EndpointSlice e2e/beta-1',
      'add Node n1',
      'synced files',
    ]);
    const first = events[0];
    assert.ok(first?.kind === 'Service' && first.type === 'add');
    assert.deepEqual(first.object.origin, { source: 'files', file: join(dir, 'a.json'), document: 1 });
    assert.deepEqual(rec.problems, [{
      code: PROBLEM.UNKNOWN_KIND,
      where: `${join(dir, 'c.yaml')} document 1, kind`,
      message: 'kind "Deployment" (apps/v1) is not one kproxy reads (Service, Endpoints, EndpointSlice, Node); ignored',
    }]);
  });
});

test('edits while running: add, update, a broken edit that drops nothing, a fix, an invalid object, removals, a deleted file', async () => {
  await withSource((dir) => {
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1', '10.1.0.2', '10.1.0.3']));
  }, async ({ dir, rec }) => {
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    assert.deepEqual(rec.take().map(summary), ['add Service e2e/alpha', 'add EndpointSlice e2e/alpha-1', 'synced files']);

    // 1. A new file: its objects are added within a second.
    writeFileSync(b, service('beta', '10.96.0.2', ['10.1.0.3']));
    let got = await rec.next(2, 'beta to be added');
    assert.deepEqual(got.events.map(summary), ['add Service e2e/beta', 'add EndpointSlice e2e/beta-1']);
    assert.ok(got.ms < 1000, `added in ${got.ms} ms`);

    // 2. An endpoint removed: one update, with the previous and the new slice.
    writeFileSync(a, service('alpha', '10.96.0.1', ['10.1.0.2', '10.1.0.3']));
    got = await rec.next(1, 'alpha-1 to be updated');
    assert.deepEqual(got.events.map(summary), ['update EndpointSlice e2e/alpha-1']);
    const upd = got.events[0];
    assert.ok(upd?.kind === 'EndpointSlice' && upd.type === 'update');
    assert.deepEqual(addressesOf(upd.previous), ['10.1.0.1', '10.1.0.2', '10.1.0.3']);
    assert.deepEqual(addressesOf(upd.object), ['10.1.0.2', '10.1.0.3']);
    assert.ok(got.ms < 1000, `updated in ${got.ms} ms`);

    // 3. Broken YAML: a problem naming the file, document and line; no event at all.
    writeFileSync(a, 'apiVersion: v1\nkind: Service\nmetadata: {name: alpha\n  namespace: [e2e\n');
    const syntax = await rec.problem((p) => p.code === PROBLEM.SYNTAX, 'the syntax problem');
    assert.equal(syntax.where, `${a} document 1, line 3 column 18`);
    assert.match(syntax.message, /^not valid YAML: .*; the 2 object\(s\) of its last good version stay in effect$/);
    await rec.quiet();
    const syntaxProblems = rec.problems.filter((p) => p.code === PROBLEM.SYNTAX).length;
    await rec.quiet(); // polls do not report it again
    assert.equal(rec.problems.filter((p) => p.code === PROBLEM.SYNTAX).length, syntaxProblems);

    // 4. Fixed again: the change is relative to the last good version.
    writeFileSync(a, service('alpha', '10.96.0.1', ['10.1.0.1']));
    got = await rec.next(1, 'alpha-1 to be updated after the fix');
    assert.deepEqual(got.events.map(summary), ['update EndpointSlice e2e/alpha-1']);
    const fixed = got.events[0];
    assert.ok(fixed?.kind === 'EndpointSlice' && fixed.type === 'update');
    assert.deepEqual(addressesOf(fixed.previous), ['10.1.0.2', '10.1.0.3']);
    assert.deepEqual(addressesOf(fixed.object), ['10.1.0.1']);

    // 5. One invalid object next to a valid one: the invalid one keeps its last good version.
    rec.problems.length = 0;
    writeFileSync(a, service('alpha', '10.96.0.999', ['10.1.0.1', '10.1.0.2']));
    got = await rec.next(1, 'alpha-1 to be updated next to an invalid alpha');
    assert.deepEqual(got.events.map(summary), ['update EndpointSlice e2e/alpha-1']);
    assert.deepEqual(rec.problems, [{
      code: PROBLEM.INVALID_IP,
      where: `${a} document 1, spec.clusterIP`,
      message: '"10.96.0.999" is not a valid IP address (or "None" for a headless Service) (Service e2e/alpha keeps its last good version)',
    }]);
    await rec.quiet();

    // 6. An atomic save (write elsewhere, rename over): an update, not a delete and an add.
    writeFileSync(join(dir, '.a.yaml.tmp'), service('alpha', '10.96.0.1', ['10.1.0.3']));
    renameSync(join(dir, '.a.yaml.tmp'), a);
    got = await rec.next(1, 'alpha-1 to be updated by an atomic save');
    assert.deepEqual(got.events.map(summary), ['update EndpointSlice e2e/alpha-1']);
    await rec.quiet(300);

    // 7. An object removed from a valid file is deleted.
    writeFileSync(a, service('alpha', '10.96.0.1', []).split('---\n')[0] ?? '');
    got = await rec.next(1, 'alpha-1 to be deleted');
    assert.deepEqual(got.events.map(summary), ['delete EndpointSlice e2e/alpha-1']);

    // 8. A deleted file: its objects are deleted.
    rmSync(b);
    got = await rec.next(2, 'beta to be deleted');
    assert.deepEqual(got.events.map(summary), ['delete Service e2e/beta', 'delete EndpointSlice e2e/beta-1']);
    const del = got.events[0];
    assert.ok(del?.kind === 'Service' && del.type === 'delete');
    assert.equal(del.object.clusterIP, '10.96.0.2');
    await rec.quiet(300);
  });
});

test('an invalid document that cannot be matched (no name) removes nothing of its kind from that file', async () => {
  await withSource((dir) => {
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1']));
  }, async ({ dir, rec }) => {
    rec.take();
    const a = join(dir, 'a.yaml');
    // The name line lost in an edit, and the endpoint changed.
    writeFileSync(a, service('alpha', '10.96.0.1', ['10.1.0.2']).replace('metadata: {name: alpha, namespace: e2e}', 'metadata: {namespace: e2e}'));
    const got = await rec.next(1, 'the slice update');
    assert.deepEqual(got.events.map(summary), ['update EndpointSlice e2e/alpha-1']);
    assert.deepEqual(rec.problems.map((p) => [p.code, p.where]), [[PROBLEM.MISSING_NAME, `${a} document 1, metadata.name`]]);
    await rec.quiet();
    // Valid again, without the Service: now it is deleted.
    writeFileSync(a, service('alpha', '10.96.0.1', ['10.1.0.2']).split('---\n')[1] ?? '');
    assert.deepEqual((await rec.next(1, 'the service delete')).events.map(summary), ['delete Service e2e/alpha']);
  });
});

test('the same object in two files: the first in sorted order wins, the problem names both places, once', async () => {
  await withSource((dir) => {
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1']));
    writeFileSync(join(dir, 'b.yaml'), service('alpha', '10.96.0.9', ['10.1.0.9']).split('---\n')[0] ?? '');
  }, async ({ dir, rec }) => {
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    const events = rec.take();
    assert.deepEqual(events.map(summary), ['add Service e2e/alpha', 'add EndpointSlice e2e/alpha-1', 'synced files']);
    const svc = events[0];
    assert.ok(svc?.kind === 'Service' && svc.type === 'add');
    assert.equal(svc.object.clusterIP, '10.96.0.1');
    assert.deepEqual(rec.problems, [{
      code: PROBLEM.DUPLICATE_OBJECT,
      where: `${b} document 1`,
      message: `Service e2e/alpha is also defined at ${a} document 1; the first definition (in sorted file order) wins, this one is ignored`,
    }]);
    // Unrelated edits (and polls) do not report it again.
    writeFileSync(join(dir, 'c.yaml'), service('gamma', '10.96.0.3', []).split('---\n')[0] ?? '');
    assert.deepEqual((await rec.next(1, 'gamma')).events.map(summary), ['add Service e2e/gamma']);
    await rec.quiet();
    assert.equal(rec.problems.length, 1);
    // The first definition goes away: the second one takes over.
    writeFileSync(a, service('alpha', '10.96.0.1', ['10.1.0.1']).split('---\n')[1] ?? '');
    const got = await rec.next(1, 'the takeover');
    assert.deepEqual(got.events.map(summary), ['update Service e2e/alpha']);
    const upd = got.events[0];
    assert.ok(upd?.kind === 'Service' && upd.type === 'update');
    assert.equal(upd.object.clusterIP, '10.96.0.9');
  });
});

test('problems are reported once per change of the file, not on every re-read', async () => {
  await withSource((dir) => {
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1']).replace('port: 80', 'port: 0'));
  }, async ({ dir, rec }) => {
    const a = join(dir, 'a.yaml');
    assert.deepEqual(rec.take().map(summary), ['add EndpointSlice e2e/alpha-1', 'synced files']);
    assert.deepEqual(rec.problems.map((p) => [p.code, p.where]), [[PROBLEM.INVALID_PORT, `${a} document 1, spec.ports[0].port`]]);
    // Touching the file makes fs.watch fire and the source re-read it: same content, no new report.
    const now = Date.now() / 1000;
    utimesSync(a, now + 5, now + 5);
    await rec.quiet();
    assert.equal(rec.problems.length, 1);
    // A real change that is still invalid is reported again.
    writeFileSync(a, service('alpha', '10.96.0.1', ['10.1.0.1']).replace('port: 80', 'port: 70000'));
    const p = await rec.problem((x) => x.message.includes('70000'), 'the new problem');
    assert.equal(p.where, `${a} document 1, spec.ports[0].port`);
    assert.equal(rec.problems.length, 2);
  });
});

test('Endpoints in a file are mirrored; an address edit updates the same slice', async () => {
  const endpoints = (ips: string[]): string => `apiVersion: v1
kind: Endpoints
metadata: {name: legacy, namespace: shop}
subsets:
- addresses: [${ips.map((ip) => `{ip: ${ip}}`).join(', ')}]
  notReadyAddresses: [{ip: 10.1.0.9}]
  ports: [{name: http, port: 9000}]
`;
  await withSource((dir) => writeFileSync(join(dir, 'ep.yaml'), endpoints(['10.1.0.1'])), async ({ dir, rec }) => {
    const [added] = rec.take();
    assert.ok(added?.kind === 'EndpointSlice' && added.type === 'add');
    assert.match(added.object.name, /^legacy-[a-z0-9]{5}$/);
    assert.equal(added.object.serviceName, 'legacy');
    assert.deepEqual(added.object.endpoints.map((e) => [e.addresses[0], e.conditions.ready]), [['10.1.0.1', true], ['10.1.0.9', false]]);
    writeFileSync(join(dir, 'ep.yaml'), endpoints(['10.1.0.1', '10.1.0.2']));
    const got = await rec.next(1, 'the mirrored slice update');
    assert.deepEqual(got.events.map(summary), [`update EndpointSlice ${added.object.id}`]);
  });
});

test('a single file as the path: other files in its folder are not read; edits are followed', async () => {
  await withSource((dir) => {
    writeFileSync(join(dir, 'one.yaml'), service('one', '10.96.0.1', ['10.1.0.1']));
    writeFileSync(join(dir, 'other.yaml'), service('other', '10.96.0.2', ['10.1.0.1']));
  }, async ({ dir, rec }) => {
    assert.deepEqual(rec.take().map(summary), ['add Service e2e/one', 'add EndpointSlice e2e/one-1', 'synced files']);
    writeFileSync(join(dir, 'other.yaml'), service('other', '10.96.0.2', ['10.1.0.2']));
    await rec.quiet(400);
    writeFileSync(join(dir, 'one.yaml'), service('one', '10.96.0.1', ['10.1.0.2']));
    assert.deepEqual((await rec.next(1, 'the update')).events.map(summary), ['update EndpointSlice e2e/one-1']);
  }, { path: (dir) => join(dir, 'one.yaml') });
});

test('without fs.watch, the stat poll alone picks up changes', async () => {
  await withSource((dir) => {
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1']));
  }, async ({ dir, rec }) => {
    rec.take();
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.2']));
    assert.deepEqual((await rec.next(1, 'the polled update')).events.map(summary), ['update EndpointSlice e2e/alpha-1']);
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'b.yaml'), service('beta', '10.96.0.2', []).split('---\n')[0] ?? '');
    assert.deepEqual((await rec.next(1, 'the polled add')).events.map(summary), ['add Service e2e/beta']);
    rmSync(join(dir, 'sub'), { recursive: true });
    assert.deepEqual((await rec.next(1, 'the polled delete')).events.map(summary), ['delete Service e2e/beta']);
  }, { watch: false, pollIntervalMs: 100 });
});

test('the path disappearing is a problem, not a deletion; it is followed again when it returns', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'kproxy-manifests-parent-'));
  const dir = join(parent, 'm');
  mkdirSync(dir);
  writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1']));
  const rec = new Recorder();
  const src = new ManifestSource({ path: dir, nodeName: 'n1', onProblem: rec.onProblem });
  try {
    await src.start(rec.sink);
    rec.take();
    renameSync(dir, join(parent, 'away'));
    const p = await rec.problem((x) => x.code === PROBLEM.PATH, 'the path problem');
    assert.equal(p.where, dir);
    assert.match(p.message, /every object read before stays in effect$/);
    await rec.quiet();
    renameSync(join(parent, 'away'), dir);
    writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.2']));
    assert.deepEqual((await rec.next(1, 'the update after the return', 2000)).events.map(summary), ['update EndpointSlice e2e/alpha-1']);
    assert.equal(rec.problems.filter((x) => x.code === PROBLEM.PATH).length, 1);
  } finally {
    await src.close();
    rmSync(parent, { recursive: true, force: true });
  }
});

test('start() on a path that does not exist fails with a coded error; close() is idempotent', async () => {
  const src = new ManifestSource({ path: '/nonexistent/kproxy/manifests', nodeName: 'n1', onProblem: () => undefined });
  await assert.rejects(src.start(() => undefined), (err: unknown) => {
    assert.ok(err instanceof KproxyError);
    assert.equal(err.code, PROBLEM.PATH);
    assert.match(err.message, /--manifests \/nonexistent\/kproxy\/manifests: cannot read it: ENOENT/);
    return true;
  });
  await src.close();
  await src.close();
});

test('close() stops every watcher and timer', async () => {
  const count = (): number => process.getActiveResourcesInfo().filter((r) => r === 'FSEventWrap' || r === 'Timeout').length;
  await sleep(200); // handles closed by earlier tests finish closing
  const before = count();
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-manifests-'));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1']));
  const src = new ManifestSource({ path: dir, nodeName: 'n1', onProblem: () => undefined });
  await src.start(() => undefined);
  writeFileSync(join(dir, 'sub', 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.2'])); // a debounce timer may be pending
  assert.ok(count() > before, 'watchers and the poll are running');
  await Promise.all([src.close(), src.close()]);
  // Closed watcher handles are released by libuv within a loop iteration or two.
  for (let i = 0; i < 50 && count() !== before; i++) await sleep(10);
  assert.equal(count(), before, JSON.stringify(process.getActiveResourcesInfo()));
  rmSync(dir, { recursive: true, force: true });
});

test('a process that starts and closes the source exits by itself', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-manifests-'));
  writeFileSync(join(dir, 'a.yaml'), service('alpha', '10.96.0.1', ['10.1.0.1']));
  const module = fileURLToPath(new URL('../../src/sources/files/source.js', import.meta.url));
  const script = `
    import { ManifestSource } from ${JSON.stringify(module)};
    import { writeFileSync } from 'node:fs';
    const src = new ManifestSource({ path: ${JSON.stringify(dir)}, nodeName: 'n1', onProblem: () => {}, debounceMs: 200 }); // closed before the re-read
    let n = 0;
    await src.start(() => { n++; });
    writeFileSync(${JSON.stringify(join(dir, 'a.yaml'))}, 'kind: Service\\n');
    await new Promise((r) => setTimeout(r, 50));
    await src.close();
    console.log('events', n);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.error, undefined, 'the child exited before the timeout');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'events 3');
});
