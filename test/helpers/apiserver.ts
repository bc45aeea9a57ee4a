/**
 * A small Kubernetes API server for tests, speaking the real list/watch protocol over HTTPS on
 * 127.0.0.1 with bearer-token authentication:
 * - GET <collection> returns {kind: XList, apiVersion, metadata: {resourceVersion}, items}
 *   (items without kind/apiVersion, as the real server sends them);
 * - GET <collection>?watch=true&resourceVersion=N streams newline-delimited JSON watch events
 *   (ADDED/MODIFIED/DELETED/BOOKMARK), chunked, starting after N;
 * - a resourceVersion older than the kept history gets 410 Gone: an ERROR watch event with a
 *   Status (as the real server does) or, with gone: 'http', an HTTP 410.
 * Supports fieldSelector metadata.name=X / metadata.namespace=X and labelSelector (key, !key,
 * key=value, key==value, key!=value, comma-joined), as the real server: a watched object that
 * starts or stops matching arrives as ADDED / DELETED. Collections: services, endpointslices
 * (discovery.k8s.io/v1), nodes. POST of events (events.k8s.io/v1 and core v1) is accepted and
 * recorded in `events`.
 * The certificate authority and server certificate are made with the openssl CLI.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Obj = Record<string, unknown>;

interface Collection {
  readonly path: string;
  readonly kind: string;
  readonly apiVersion: string;
  readonly namespaced: boolean;
}

const COLLECTIONS: readonly Collection[] = [
  { path: '/api/v1/services', kind: 'Service', apiVersion: 'v1', namespaced: true },
  { path: '/apis/discovery.k8s.io/v1/endpointslices', kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', namespaced: true },
  { path: '/api/v1/nodes', kind: 'Node', apiVersion: 'v1', namespaced: false },
];

interface HistoryEntry {
  readonly rv: number;
  readonly kind: string;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: Obj;
  /** The object before a MODIFIED (for selector transitions). */
  readonly previous?: Obj;
}

/** Event collections the server accepts POSTs to (namespace in the path). */
const EVENT_PATHS: readonly { readonly re: RegExp; readonly apiVersion: string }[] = [
  { re: /^\/apis\/events\.k8s\.io\/v1\/namespaces\/([^/]+)\/events$/, apiVersion: 'events.k8s.io/v1' },
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/events$/, apiVersion: 'v1' },
];

/** An event POSTed to the server. */
export interface RecordedEvent {
  readonly apiVersion: string;
  readonly namespace: string;
  readonly body: Obj;
}

function labelsOf(o: Obj): Record<string, unknown> {
  const l = metaOf(o).labels;
  return typeof l === 'object' && l !== null && !Array.isArray(l) ? (l as Record<string, unknown>) : {};
}

/** A label selector as the API server parses the equality/existence forms. */
export function labelSelector(text: string): (o: Obj) => boolean {
  const tests: ((labels: Record<string, unknown>) => boolean)[] = [];
  for (const raw of text.split(',').map((t) => t.trim()).filter((t) => t !== '')) {
    let m: RegExpExecArray | null;
    if ((m = /^!([^=!]+)$/.exec(raw))) {
      const k = m[1] ?? '';
      tests.push((l) => !(k in l));
    } else if ((m = /^([^=!]+)!=(.*)$/.exec(raw))) {
      const [k = '', v = ''] = [m[1], m[2]];
      tests.push((l) => l[k] !== v);
    } else if ((m = /^([^=!]+)==?(.*)$/.exec(raw))) {
      const [k = '', v = ''] = [m[1], m[2]];
      tests.push((l) => l[k] === v);
    } else if ((m = /^([^=!]+)$/.exec(raw))) {
      const k = m[1] ?? '';
      tests.push((l) => k in l);
    } else {
      throw new Error(`unable to parse requirement: ${raw}`);
    }
  }
  return (o) => tests.every((t) => t(labelsOf(o)));
}

interface WatchConn {
  readonly kind: string;
  readonly selector: (o: Obj) => boolean;
  readonly res: ServerResponse;
}

export interface Certs {
  readonly dir: string;
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

let certsCache: Certs | undefined;

/** A CA and a server certificate for 127.0.0.1 (made once per process). */
export function testCerts(): Certs {
  if (certsCache !== undefined) return certsCache;
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-apiserver-'));
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=kproxy-test-ca');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf');
  certsCache = {
    dir,
    caPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    certPem: readFileSync(join(dir, 'server.crt'), 'utf8'),
    keyPem: readFileSync(join(dir, 'server.key'), 'utf8'),
  };
  return certsCache;
}

function status(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function metaOf(o: Obj): Obj {
  const m = o.metadata;
  return typeof m === 'object' && m !== null && !Array.isArray(m) ? (m as Obj) : {};
}

function keyOf(o: Obj): string {
  const m = metaOf(o);
  return `${String(m.namespace ?? '')}/${String(m.name ?? '')}`;
}

export interface TestApiServerOptions {
  /** Accepted bearer token (default 'test-token'). */
  readonly token?: string;
  /** How too-old watches are refused: 'event' (200 + ERROR event, default) or 'http' (HTTP 410). */
  readonly gone?: 'event' | 'http';
}

export class TestApiServer {
  token: string;
  gone: 'event' | 'http';
  private readonly server: Server;
  private rv = 100;
  /** Watches from a resourceVersion below this get 410 Gone. */
  private oldest = 100;
  private readonly store = new Map<string, Map<string, Obj>>();
  private history: HistoryEntry[] = [];
  private readonly watches = new Set<WatchConn>();
  private readonly sockets = new Set<Socket>();
  /** Request log: "GET /api/v1/services?watch=true&..." */
  readonly requests: string[] = [];
  /** Count of requests refused for a bad token. */
  unauthorized = 0;
  /** Events POSTed, in order. */
  readonly events: RecordedEvent[] = [];
  /** Every object sent to a client (in lists and watch events), as "Kind ns/name". */
  readonly sent: string[] = [];
  port = 0;

  private constructor(opts: TestApiServerOptions) {
    this.token = opts.token ?? 'test-token';
    this.gone = opts.gone ?? 'event';
    for (const c of COLLECTIONS) this.store.set(c.kind, new Map());
    const certs = testCerts();
    this.server = createServer({ cert: certs.certPem, key: certs.keyPem }, (req, res) => this.handle(req, res));
    this.server.on('connection', (sock: Socket) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
    });
  }

  static async start(opts: TestApiServerOptions = {}): Promise<TestApiServer> {
    const s = new TestApiServer(opts);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    s.port = (s.server.address() as AddressInfo).port;
    return s;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Open watch connections (of a kind, or all). */
  watchCount(kind?: string): number {
    return [...this.watches].filter((w) => kind === undefined || w.kind === kind).length;
  }

  /** Writes a kubeconfig for this server; returns its path. */
  writeKubeconfig(path: string, opts: { token?: string; server?: string; caPem?: string } = {}): string {
    const ca = Buffer.from(opts.caPem ?? testCerts().caPem).toString('base64');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server: opts.server ?? this.url, 'certificate-authority-data': ca } }],
      users: [{ name: 'test', user: { token: opts.token ?? this.token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
      'current-context': 'test',
    };
    writeFileSync(path, JSON.stringify(config, null, 2));
    return path;
  }

  // -------------------------------------------------------------------------------------------
  // Changes

  /** Creates or replaces an object (kind from obj.kind); returns the stored copy. */
  apply(obj: Obj): Obj {
    const kind = String(obj.kind);
    const objects = this.store.get(kind);
    if (objects === undefined) throw new Error(`unknown kind ${kind}`);
    const existing = objects.get(keyOf(obj));
    this.rv++;
    const stored: Obj = { ...obj, metadata: { ...metaOf(obj), resourceVersion: String(this.rv), uid: `uid-${keyOf(obj)}` } };
    objects.set(keyOf(obj), stored);
    this.record(existing === undefined ? { rv: this.rv, kind, type: 'ADDED', object: stored } : { rv: this.rv, kind, type: 'MODIFIED', object: stored, previous: existing });
    return stored;
  }

  delete(kind: string, namespace: string, name: string): boolean {
    const objects = this.store.get(kind);
    const key = `${namespace}/${name}`;
    const existing = objects?.get(key);
    if (objects === undefined || existing === undefined) return false;
    objects.delete(key);
    this.rv++;
    this.record({ rv: this.rv, kind, type: 'DELETED', object: { ...existing, metadata: { ...metaOf(existing), resourceVersion: String(this.rv) } } });
    return true;
  }

  /** Ends every watch connection (cleanly, or by destroying the socket). */
  dropWatches(how: 'end' | 'destroy' = 'end'): void {
    for (const w of this.watches) {
      if (how === 'end') w.res.end();
      else w.res.destroy();
    }
    this.watches.clear();
  }

  /** Forgets the history: watches from any earlier resourceVersion get 410 Gone. */
  expireHistory(): void {
    this.rv++;
    this.oldest = this.rv;
    this.history = [];
  }

  /** Sends a BOOKMARK with the current resourceVersion on every watch. */
  bookmark(): void {
    for (const w of this.watches) {
      const c = COLLECTIONS.find((x) => x.kind === w.kind);
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: w.kind, apiVersion: c?.apiVersion, metadata: { resourceVersion: String(this.rv) } } }) + '\n');
    }
  }

  async close(): Promise<void> {
    this.dropWatches('destroy');
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private record(e: HistoryEntry): void {
    this.history.push(e);
    for (const w of this.watches) {
      if (w.kind === e.kind) this.deliver(w.res, e, w.selector);
    }
  }

  /** Sends a history entry as a watcher with this selector sees it (selector transitions included). */
  private deliver(res: ServerResponse, e: HistoryEntry, selector: (o: Obj) => boolean): void {
    const now = selector(e.object);
    if (e.type !== 'MODIFIED' || e.previous === undefined) {
      if (now) this.send(res, e.type, e.object);
      return;
    }
    const before = selector(e.previous);
    if (before && now) this.send(res, 'MODIFIED', e.object);
    else if (!before && now) this.send(res, 'ADDED', e.object);
    else if (before && !now) this.send(res, 'DELETED', e.object);
  }

  private send(res: ServerResponse, type: string, object: Obj): void {
    if (type !== 'ERROR') this.sent.push(`${String(object.kind)} ${keyOf(object)}`);
    res.write(JSON.stringify({ type, object }) + '\n');
  }

  // -------------------------------------------------------------------------------------------
  // HTTP

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push(`${req.method ?? ''} ${req.url ?? ''}`);
    const reply = (code: number, body: Obj): void => {
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      this.unauthorized++;
      reply(401, status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    if (req.method === 'POST') {
      this.handlePost(req, url, reply);
      return;
    }
    const c = COLLECTIONS.find((x) => x.path === url.pathname);
    if (req.method !== 'GET' || c === undefined) {
      reply(404, status(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
      return;
    }
    const byField = this.fieldSelector(url.searchParams.get('fieldSelector') ?? '');
    let byLabel: (o: Obj) => boolean;
    try {
      byLabel = labelSelector(url.searchParams.get('labelSelector') ?? '');
    } catch (err) {
      reply(400, status(400, 'BadRequest', `unable to parse requirement: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    const selector = (o: Obj): boolean => byField(o) && byLabel(o);
    if (url.searchParams.get('watch') !== 'true') {
      const items = [...(this.store.get(c.kind)?.values() ?? [])].filter(selector).map((o) => {
        this.sent.push(`${c.kind} ${keyOf(o)}`);
        const { kind: _k, apiVersion: _a, ...rest } = o;
        return rest;
      });
      reply(200, { kind: `${c.kind}List`, apiVersion: c.apiVersion, metadata: { resourceVersion: String(this.rv) }, items });
      return;
    }
    const rvText = url.searchParams.get('resourceVersion') ?? '';
    const from = rvText === '' || rvText === '0' ? this.rv : Number(rvText);
    const expired = !Number.isInteger(from) || from < this.oldest;
    if (expired && this.gone === 'http') {
      reply(410, status(410, 'Expired', `too old resource version: ${rvText} (${this.oldest})`));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    if (expired) {
      this.send(res, 'ERROR', status(410, 'Expired', `too old resource version: ${rvText} (${this.oldest})`));
      res.end();
      return;
    }
    for (const e of this.history) {
      if (e.rv > from && e.kind === c.kind) this.deliver(res, e, selector);
    }
    const conn: WatchConn = { kind: c.kind, selector, res };
    this.watches.add(conn);
    res.on('close', () => this.watches.delete(conn));
  }

  /** POST of an Event: stored in `events` and answered 201 with the object, as the real server. */
  private handlePost(req: IncomingMessage, url: URL, reply: (code: number, body: Obj) => void): void {
    const match = EVENT_PATHS.map((p) => ({ p, m: p.re.exec(url.pathname) })).find((x) => x.m !== null);
    if (match === undefined || match.m === null) {
      reply(405, status(405, 'MethodNotAllowed', `POST is not supported on ${url.pathname}`));
      return;
    }
    const namespace = match.m[1] ?? '';
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        reply(400, status(400, 'BadRequest', 'the request body is not JSON'));
        return;
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        reply(400, status(400, 'BadRequest', 'the request body is not an object'));
        return;
      }
      const ev = body as Obj;
      const ns = metaOf(ev).namespace;
      if (ns !== undefined && ns !== namespace) {
        reply(400, status(400, 'BadRequest', `the namespace of the provided object does not match the namespace sent on the request`));
        return;
      }
      if (ev.apiVersion !== match.p.apiVersion || ev.kind !== 'Event') {
        reply(400, status(400, 'BadRequest', `expected an Event of ${match.p.apiVersion}, got ${String(ev.kind)} ${String(ev.apiVersion)}`));
        return;
      }
      this.events.push({ apiVersion: match.p.apiVersion, namespace, body: ev });
      this.rv++;
      reply(201, { ...ev, metadata: { ...metaOf(ev), namespace, resourceVersion: String(this.rv) } });
    });
  }

  private fieldSelector(text: string): (o: Obj) => boolean {
    const tests: ((o: Obj) => boolean)[] = [];
    for (const term of text.split(',').filter((t) => t !== '')) {
      const [field, value = ''] = term.split('=');
      if (field === 'metadata.name') tests.push((o) => metaOf(o).name === value);
      else if (field === 'metadata.namespace') tests.push((o) => metaOf(o).namespace === value);
    }
    return (o) => tests.every((t) => t(o));
  }
}
