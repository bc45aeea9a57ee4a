/**
 * The Kubernetes source: Services, EndpointSlices and this node's Node from an API server,
 * through @kubernetes/client-node's informer (ListWatch: list, then watch from the list's
 * resourceVersion; on 410 Gone it relists and diffs the new list against its cache, so only
 * objects really gone are deleted).
 *
 * Connection, as upstream's kube-proxy: --kubeconfig (with --master overriding its server), or
 * --master alone (no credentials), or neither: the in-cluster service account.
 *
 * Selection, as upstream: Services (and their EndpointSlices) labelled
 * service.kubernetes.io/service-proxy-name (unless it equals proxyName) or
 * service.kubernetes.io/headless are skipped; headless (clusterIP None) and ExternalName
 * Services are dropped; only IPv4 EndpointSlices are read; only the Node named nodeName.
 * As upstream's informers, the Service and EndpointSlice requests carry a label selector
 * (!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name) so the API server
 * does the filtering (and sends DELETED when an object gains such a label); the same rules are
 * checked here again, so a server that ignores the selector changes nothing.
 *
 * A broken watch never empties the rules: reconnects watch from the last resourceVersion; a
 * relist diffs against what was already delivered (and what this source emitted), so the
 * previous state serves until the relist completes. Errors (unreachable server, bad
 * credentials, forbidden) are logged and reported, and the informer restarts with exponential
 * backoff (1 s doubling to 30 s).
 */
import { isDeepStrictEqual } from 'node:util';
import { KubeConfig, ListWatch, Watch, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { KproxyError, errorMessage } from '../../core/errors.js';
import type { EventSink, Source, SourceEvent, SourceProblem } from '../../core/events.js';
import type { ApiObject } from '../../core/objects.js';
import type { Logger } from '../../observability/log.js';
import { ApiEventRecorder } from './events.js';
import { apiRequest } from './request.js';
import { convertEndpointSlice, convertNode, convertService, isRecord, objectKey, type ConvertResult } from '../convert.js';

export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

/**
 * Everything kproxy asks the API server for: this source's informers and its event recorder
 * (events.ts). The RBAC ClusterRole grants exactly this.
 */
export const KUBERNETES_SOURCE_ACCESS: readonly { readonly apiGroup: string; readonly resource: string; readonly verbs: readonly string[] }[] = [
  { apiGroup: '', resource: 'services', verbs: ['list', 'watch'] },
  { apiGroup: 'discovery.k8s.io', resource: 'endpointslices', verbs: ['list', 'watch'] },
  { apiGroup: '', resource: 'nodes', verbs: ['list', 'watch'] },
  { apiGroup: 'events.k8s.io', resource: 'events', verbs: ['create'] },
];

/** Stable problem codes of this source (conversion problems carry the converters' codes). */
export const KUBERNETES_PROBLEM = {
  /** No usable connection configuration (bad kubeconfig, not in a cluster). Fatal at start. */
  CONFIG: 'KP_ERR_KUBERNETES_CONFIG',
  /** The API server cannot be reached, or refused a request (retried). */
  CONNECTION: 'KP_ERR_KUBERNETES_CONNECTION',
  /** 401/403: credentials or RBAC (retried). */
  AUTH: 'KP_ERR_KUBERNETES_AUTH',
} as const;

export interface KubernetesSourceOptions {
  /** Path of a kubeconfig file (--kubeconfig). */
  readonly kubeconfig?: string | undefined;
  /** API server URL (--master); overrides the kubeconfig's server. */
  readonly master?: string | undefined;
  /** Only the Node with this name is read. */
  readonly nodeName: string;
  /** This proxy's service.kubernetes.io/service-proxy-name; unset: Services with the label are skipped. */
  readonly proxyName?: string | undefined;
  readonly onProblem: (p: SourceProblem) => void;
  readonly log: Logger;
  /** Backoff after an error: first delay (default 1000 ms) and cap (default 30000 ms). */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** Timeout of a list request (default 60000 ms). */
  readonly listTimeoutMs?: number;
  /** Event recorder retries (default 3 attempts, 1000 ms apart). */
  readonly eventAttempts?: number;
  readonly eventRetryMs?: number;
}

type Kind = 'Service' | 'EndpointSlice' | 'Node';

interface Resource {
  readonly kind: Kind;
  readonly apiVersion: string;
  /** Plural resource name, for messages. */
  readonly resource: string;
  readonly path: string;
  readonly fieldSelector?: string;
  readonly labelSelector?: string;
}

/**
 * Upstream's informer label selector: no headless label and no service-proxy-name label
 * (requirements in key order, as labels.Selector prints them). With a proxy name of our own,
 * Services labelled with it are wanted too, which a selector cannot say alongside "unlabelled":
 * then only the headless requirement goes to the server and the name is checked here.
 */
export function serviceLabelSelector(proxyName: string | undefined): string {
  return proxyName === undefined || proxyName === '' ? `!${HEADLESS_LABEL},!${SERVICE_PROXY_NAME_LABEL}` : `!${HEADLESS_LABEL}`;
}

/** Per informer state. */
interface Informer {
  readonly res: Resource;
  readonly lw: ListWatch<KubernetesObject>;
  listed: boolean;
  retryTimer: NodeJS.Timeout | undefined;
  retryDelayMs: number;
  lastError: string | undefined;
}

interface WatchOwner {
  readonly closed: boolean;
  /** Open watch requests. */
  readonly watches: Set<AbortController>;
  /** watch() calls not yet connected. */
  readonly pending: Set<Promise<unknown>>;
}

/**
 * client-node's Watch, tracking its connections: ListWatch.stop() cannot abort a watch whose
 * request is still being made (it only learns the request's controller when it connects), so
 * a watch that connects after close() is aborted here, and close() waits for pending ones.
 */
class TrackedWatch extends Watch {
  constructor(kc: KubeConfig, private readonly owner: WatchOwner, private readonly onConnected: () => void) {
    super(kc);
  }

  override watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    const owner = this.owner;
    let controller: AbortController | undefined;
    const p = super.watch(path, queryParams, callback, (err: unknown) => {
      if (controller !== undefined) owner.watches.delete(controller);
      done(err);
    }).then((c) => {
      controller = c;
      if (owner.closed) c.abort();
      else if (!c.signal.aborted) {
        // Aborted already means it failed (done was called); otherwise the watch is streaming.
        owner.watches.add(c);
        this.onConnected();
      }
      return c;
    });
    owner.pending.add(p);
    void p.finally(() => owner.pending.delete(p)).catch(() => undefined);
    return p;
  }
}

function objectEvent(type: 'add' | 'delete', o: ApiObject): SourceEvent {
  switch (o.kind) {
    case 'Service': return { kind: 'Service', type, object: o };
    case 'EndpointSlice': return { kind: 'EndpointSlice', type, object: o };
    case 'Node': return { kind: 'Node', type, object: o };
  }
}

function updateEvent(previous: ApiObject, o: ApiObject): SourceEvent {
  if (previous.kind === 'Service' && o.kind === 'Service') return { kind: 'Service', type: 'update', previous, object: o };
  if (previous.kind === 'EndpointSlice' && o.kind === 'EndpointSlice') return { kind: 'EndpointSlice', type: 'update', previous, object: o };
  if (previous.kind === 'Node' && o.kind === 'Node') return { kind: 'Node', type: 'update', previous, object: o };
  throw new Error(`object changed kind from ${previous.kind} to ${o.kind}`);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function labelsOf(meta: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  return isRecord(meta.labels) ? meta.labels : {};
}

/** Builds the client configuration as upstream's kube-proxy does. Throws KproxyError. */
export function loadKubeConfig(opts: { readonly kubeconfig?: string | undefined; readonly master?: string | undefined }): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (opts.kubeconfig !== undefined && opts.kubeconfig !== '') {
      kc.loadFromFile(opts.kubeconfig);
    } else if (opts.master !== undefined && opts.master !== '') {
      kc.loadFromClusterAndUser({ name: 'master', server: opts.master, skipTLSVerify: false }, { name: 'anonymous' });
    } else {
      if (process.env.KUBERNETES_SERVICE_HOST === undefined || process.env.KUBERNETES_SERVICE_PORT === undefined) {
        throw new Error('neither --kubeconfig nor --master was given, and this is not running in a cluster (KUBERNETES_SERVICE_HOST/PORT are unset)');
      }
      kc.loadFromCluster();
    }
  } catch (err) {
    const what = opts.kubeconfig !== undefined && opts.kubeconfig !== '' ? `--kubeconfig ${opts.kubeconfig}` : 'the Kubernetes client configuration';
    throw new KproxyError(KUBERNETES_PROBLEM.CONFIG, `${what}: ${errorMessage(err)}`, { cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) {
    throw new KproxyError(KUBERNETES_PROBLEM.CONFIG, `--kubeconfig ${opts.kubeconfig ?? ''}: its current context (${JSON.stringify(kc.getCurrentContext())}) names no cluster`);
  }
  if (opts.master !== undefined && opts.master !== '' && opts.kubeconfig !== undefined && opts.kubeconfig !== '') {
    kc.clusters = kc.clusters.map((c) => (c.name === cluster.name ? { ...c, server: opts.master ?? c.server } : c));
  }
  const server = kc.getCurrentCluster()?.server ?? '';
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new KproxyError(KUBERNETES_PROBLEM.CONFIG, `the API server address ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new KproxyError(KUBERNETES_PROBLEM.CONFIG, `the API server address ${JSON.stringify(server)} must be http:// or https://`);
  }
  if (url.protocol === 'http:') {
    // client-node refuses plain HTTP unless TLS verification is off; there is no TLS to verify.
    const name = kc.getCurrentCluster()?.name;
    kc.clusters = kc.clusters.map((c) => (c.name === name ? { ...c, skipTLSVerify: true } : c));
  }
  return kc;
}

export class KubernetesSource implements Source {
  readonly name = 'kubernetes';
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly listTimeoutMs: number;
  private kc: KubeConfig | undefined;
  private sink: EventSink | undefined;
  private started = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private synced = false;
  private readonly informers: Informer[] = [];
  /** What the sink has been told, by objectKey. */
  private readonly emitted = new Map<string, ApiObject>();
  /** List requests in flight (aborted by close). */
  private readonly lists = new Set<AbortController>();
  private readonly watchOwner: WatchOwner;
  /** Events about this node, through the same connection (usable once started). */
  readonly recorder: ApiEventRecorder;

  constructor(private readonly opts: KubernetesSourceOptions) {
    this.retryBaseMs = opts.retryBaseMs ?? 1000;
    this.retryMaxMs = opts.retryMaxMs ?? 30000;
    this.listTimeoutMs = opts.listTimeoutMs ?? 60000;
    this.recorder = new ApiEventRecorder({
      kubeConfig: () => this.kc, nodeName: opts.nodeName, log: opts.log,
      ...(opts.eventAttempts !== undefined ? { attempts: opts.eventAttempts } : {}),
      ...(opts.eventRetryMs !== undefined ? { retryMs: opts.eventRetryMs } : {}),
    });
    const self = this;
    this.watchOwner = {
      get closed(): boolean {
        return self.closed;
      },
      watches: new Set(),
      pending: new Set(),
    };
  }

  /**
   * Connects and starts the informers. Resolves once they are started (not synced: 'synced' is
   * emitted when all three have listed). Throws only for a configuration that cannot work.
   */
  async start(sink: EventSink): Promise<void> {
    if (this.started) throw new KproxyError('KP_ERR_KUBERNETES_STARTED', 'the Kubernetes source was already started');
    this.started = true;
    this.sink = sink;
    const kc = loadKubeConfig(this.opts);
    this.kc = kc;
    const labelSelector = serviceLabelSelector(this.opts.proxyName);
    const resources: Resource[] = [
      { kind: 'Service', apiVersion: 'v1', resource: 'services', path: '/api/v1/services', labelSelector },
      { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', resource: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', labelSelector },
      { kind: 'Node', apiVersion: 'v1', resource: 'nodes', path: '/api/v1/nodes', fieldSelector: `metadata.name=${this.opts.nodeName}` },
    ];
    this.opts.log.info('Connecting to the API server', { server: kc.getCurrentCluster()?.server });
    for (const res of resources) {
      const lw = new ListWatch<KubernetesObject>(res.path, new TrackedWatch(kc, this.watchOwner, () => this.onSuccess(inf)), () => this.list(inf), false, res.labelSelector, res.fieldSelector);
      const inf: Informer = { res, lw, listed: false, retryTimer: undefined, retryDelayMs: this.retryBaseMs, lastError: undefined };
      lw.on('add', (o) => this.onObject(res, o));
      lw.on('update', (o) => this.onObject(res, o));
      lw.on('delete', (o) => this.onDelete(res, o));
      lw.on('error', (err: unknown) => this.onError(inf, err));
      this.informers.push(inf);
    }
    for (const inf of this.informers) this.run(inf);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.recorder.close();
      for (const c of this.lists) c.abort();
      this.lists.clear();
      await Promise.all(this.informers.map(async (inf) => {
        if (inf.retryTimer !== undefined) clearTimeout(inf.retryTimer);
        inf.retryTimer = undefined;
        await inf.lw.stop();
      }));
      const { pending, watches } = this.watchOwner;
      while (pending.size > 0) await Promise.allSettled([...pending]);
      for (const c of watches) c.abort();
      watches.clear();
    })();
    return this.closing;
  }

  /** Whether all three informers have delivered their initial list. */
  get isSynced(): boolean {
    return this.synced;
  }

  // -------------------------------------------------------------------------------------------
  // Informer lifecycle

  private run(inf: Informer): void {
    if (this.closed) return;
    inf.lw.start().catch((err: unknown) => this.onError(inf, err));
  }

  private onError(inf: Informer, err: unknown): void {
    if (this.closed) return;
    const { code, message } = this.describeError(inf.res, err);
    const delay = inf.retryDelayMs;
    inf.retryDelayMs = Math.min(inf.retryDelayMs * 2, this.retryMaxMs);
    this.opts.log.warn(`${message}; retrying in ${delay} ms`, { resource: inf.res.resource });
    if (inf.lastError !== message) {
      inf.lastError = message;
      this.opts.onProblem({ code, where: this.server(), message: `${message}; retrying (the objects read before stay in effect)` });
    }
    if (inf.retryTimer !== undefined) clearTimeout(inf.retryTimer);
    inf.retryTimer = setTimeout(() => {
      inf.retryTimer = undefined;
      this.run(inf);
    }, delay);
  }

  private onSuccess(inf: Informer): void {
    if (inf.lastError !== undefined) {
      this.opts.log.info('API server requests succeed again', { resource: inf.res.resource });
    }
    inf.lastError = undefined;
    inf.retryDelayMs = this.retryBaseMs;
  }

  private server(): string {
    return this.kc?.getCurrentCluster()?.server ?? '';
  }

  private describeError(res: Resource, err: unknown): { code: string; message: string } {
    const status = typeof err === 'object' && err !== null && 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : undefined;
    const causeOf = (e: unknown): string => {
      const cause = e instanceof Error && e.cause !== undefined ? `: ${causeOf(e.cause)}` : '';
      const code = typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? ` (${e.code})` : '';
      return `${errorMessage(e)}${code}${cause}`;
    };
    const base = `reading ${res.resource} from the API server ${this.server()}`;
    if (status === 401) {
      return { code: KUBERNETES_PROBLEM.AUTH, message: `${base}: HTTP 401 Unauthorized: the credentials (token or client certificate) were rejected` };
    }
    if (status === 403) {
      return { code: KUBERNETES_PROBLEM.AUTH, message: `${base}: HTTP 403 Forbidden: the account may not list/watch ${res.resource} (check the ClusterRole); ${err instanceof Error ? err.message : ''}` };
    }
    if (status !== undefined) return { code: KUBERNETES_PROBLEM.CONNECTION, message: `${base}: HTTP ${status}: ${errorMessage(err)}` };
    return { code: KUBERNETES_PROBLEM.CONNECTION, message: `${base}: ${causeOf(err)}` };
  }

  /** The informer's list function: a plain GET, keeping the objects' JSON as the server sent it. */
  private async list(inf: Informer): Promise<KubernetesListObject<KubernetesObject>> {
    const kc = this.kc;
    if (kc === undefined || this.closed) throw new Error('the Kubernetes source is closed');
    const controller = new AbortController();
    this.lists.add(controller);
    let body: string;
    try {
      body = await apiRequest(kc, {
        method: 'GET', path: inf.res.path, signal: controller.signal, timeoutMs: this.listTimeoutMs,
        query: { fieldSelector: inf.res.fieldSelector, labelSelector: inf.res.labelSelector },
      });
    } finally {
      this.lists.delete(controller);
    }
    if (this.closed) throw new Error('the Kubernetes source is closed');
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (err) {
      throw new Error(`the ${inf.res.resource} list is not JSON: ${errorMessage(err)}`);
    }
    if (!isRecord(parsed) || !Array.isArray(parsed.items)) throw new Error(`the ${inf.res.resource} list has no items`);
    const meta = isRecord(parsed.metadata) ? parsed.metadata : {};
    // List items carry no kind/apiVersion; the converters want them.
    const items = parsed.items.map((item: unknown) =>
      (isRecord(item) ? { ...item, kind: inf.res.kind, apiVersion: inf.res.apiVersion } : item) as KubernetesObject);
    this.onSuccess(inf);
    // The informer applies the list synchronously once this promise resolves; setImmediate
    // runs after that.
    setImmediate(() => this.onListed(inf));
    return { apiVersion: str(parsed.apiVersion), kind: str(parsed.kind), metadata: { resourceVersion: str(meta.resourceVersion) }, items };
  }

  private onListed(inf: Informer): void {
    if (this.closed || inf.listed) return;
    inf.listed = true;
    this.opts.log.info('Listed from the API server', { resource: inf.res.resource }, 2);
    if (!this.synced && this.informers.every((i) => i.listed)) {
      this.synced = true;
      this.sink?.({ kind: 'synced', source: this.name });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Objects

  /** Why an object is not used, or undefined when it is. */
  private skipReason(res: Resource, raw: Readonly<Record<string, unknown>>, meta: Readonly<Record<string, unknown>>): string | undefined {
    const labels = labelsOf(meta);
    if (res.kind === 'Node') return str(meta.name) === this.opts.nodeName ? undefined : 'another node';
    const proxyName = labels[SERVICE_PROXY_NAME_LABEL];
    if (proxyName !== undefined && proxyName !== this.opts.proxyName) return `labelled ${SERVICE_PROXY_NAME_LABEL}=${str(proxyName)}`;
    if (labels[HEADLESS_LABEL] !== undefined) return `labelled ${HEADLESS_LABEL}`;
    if (res.kind === 'Service') {
      const spec = isRecord(raw.spec) ? raw.spec : {};
      if (spec.type === 'ExternalName') return 'an ExternalName service';
      if (spec.clusterIP === 'None') return 'a headless service';
    } else {
      const at = raw.addressType;
      if (at !== 'IPv4') return `addressType ${str(at)}`;
    }
    return undefined;
  }

  private convert(res: Resource, raw: unknown, where: string): ConvertResult<ApiObject> {
    const ctx = { origin: { source: this.name }, where };
    switch (res.kind) {
      case 'Service': return convertService(raw, ctx);
      case 'EndpointSlice': return convertEndpointSlice(raw, ctx);
      case 'Node': return convertNode(raw, ctx);
    }
  }

  private identity(res: Resource, meta: Readonly<Record<string, unknown>>): { key: string; where: string } {
    const name = str(meta.name);
    if (res.kind === 'Node') return { key: `Node//${name}`, where: `Node ${name}` };
    const ns = str(meta.namespace) === '' ? 'default' : str(meta.namespace);
    return { key: `${res.kind}/${ns}/${name}`, where: `${res.kind} ${ns}/${name}` };
  }

  private onObject(res: Resource, obj: KubernetesObject): void {
    if (this.closed) return;
    const raw: unknown = obj;
    if (!isRecord(raw)) return;
    const meta = isRecord(raw.metadata) ? raw.metadata : {};
    const { key, where } = this.identity(res, meta);
    const prev = this.emitted.get(key);
    const skip = this.skipReason(res, raw, meta);
    if (skip !== undefined) {
      if (res.kind !== 'Node') this.opts.log.info(`Ignoring ${where}: ${skip}`, undefined, 4);
      if (prev !== undefined) this.emit(key, undefined);
      return;
    }
    const withType = raw.kind === undefined ? { ...raw, kind: res.kind, apiVersion: res.apiVersion } : raw;
    const out = this.convert(res, withType, where);
    if (!out.ok) {
      const note = prev !== undefined ? ` (${where} keeps its last good version)` : ` (${where} is skipped)`;
      for (const p of out.problems) this.opts.onProblem({ ...p, message: p.message + note });
      return;
    }
    for (const w of out.warnings) this.opts.onProblem(w);
    if (objectKey(out.object) !== key) {
      // The converter defaults namespaces the same way; keep our key consistent regardless.
      this.opts.log.warn('object key mismatch', { expected: key, got: objectKey(out.object) });
    }
    this.emit(key, out.object);
  }

  private onDelete(res: Resource, obj: KubernetesObject): void {
    if (this.closed) return;
    const raw: unknown = obj;
    if (!isRecord(raw)) return;
    const meta = isRecord(raw.metadata) ? raw.metadata : {};
    const { key } = this.identity(res, meta);
    if (this.emitted.has(key)) this.emit(key, undefined);
  }

  /** Tells the sink about the new state of key (undefined: gone), when it changed. */
  private emit(key: string, next: ApiObject | undefined): void {
    const prev = this.emitted.get(key);
    let event: SourceEvent | undefined;
    if (next === undefined) {
      if (prev === undefined) return;
      this.emitted.delete(key);
      event = objectEvent('delete', prev);
    } else if (prev === undefined) {
      this.emitted.set(key, next);
      event = objectEvent('add', next);
    } else {
      if (isDeepStrictEqual(prev, next)) return;
      this.emitted.set(key, next);
      event = updateEvent(prev, next);
    }
    this.sink?.(event);
  }
}
