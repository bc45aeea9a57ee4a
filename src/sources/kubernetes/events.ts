/**
 * Events about this node, as upstream's kube-proxy records them (events.k8s.io/v1, through its
 * event broadcaster): regarding the Node (kind Node, name and uid the node name, as upstream's
 * NodeRef), in namespace "default" (where cluster-scoped objects' events go), named
 * "<node>.<hex nanoseconds>". Upstream records "Starting" (action StartKubeProxy) once it is
 * running, and warnings such as a read-only /sys for conntrack settings.
 *
 * Recording is best effort, as upstream's: a failed POST is retried a few times, then logged;
 * it never stops kproxy. close() abandons what is still pending.
 */
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../observability/log.js';
import { apiRequest } from './request.js';

export type EventType = 'Normal' | 'Warning';

/** Records events about this node. */
export interface NodeEventRecorder {
  eventf(type: EventType, reason: string, action: string, note: string): void;
  /** Resolves when every event recorded so far was sent or given up on. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** For sources without an API server (manifests): events are only logged. */
export function loggingEventRecorder(log: Logger): NodeEventRecorder {
  return {
    eventf: (type, reason, action, note) => log.info('event', { type, reason, action, note }, 2),
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

export const EVENT_REPORTING_CONTROLLER = 'kproxy';
/** The API allows 1 kB of note. */
const MAX_NOTE = 1024;

export interface ApiEventRecorderOptions {
  readonly kubeConfig: () => KubeConfig | undefined;
  readonly nodeName: string;
  readonly log: Logger;
  /** Attempts per event (default 3) and the delay between them (default 1000 ms). */
  readonly attempts?: number;
  readonly retryMs?: number;
  readonly now?: () => Date;
}

/** "2006-01-02T15:04:05.000000Z": events.k8s.io's MicroTime. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class ApiEventRecorder implements NodeEventRecorder {
  private readonly pending = new Set<Promise<void>>();
  private readonly controller = new AbortController();
  private readonly instance = `${EVENT_REPORTING_CONTROLLER}-${hostname()}`;
  private lastNanos = 0n;

  constructor(private readonly opts: ApiEventRecorderOptions) {}

  eventf(type: EventType, reason: string, action: string, note: string): void {
    if (this.controller.signal.aborted) return;
    const at = (this.opts.now ?? (() => new Date()))();
    // Names must be unique: nanoseconds since the epoch, kept increasing within this process.
    let nanos = BigInt(at.getTime()) * 1_000_000n;
    if (nanos <= this.lastNanos) nanos = this.lastNanos + 1n;
    this.lastNanos = nanos;
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${this.opts.nodeName}.${nanos.toString(16)}`, namespace: 'default' },
      eventTime: microTime(at),
      reportingController: EVENT_REPORTING_CONTROLLER,
      reportingInstance: this.instance,
      action,
      reason,
      type,
      regarding: { kind: 'Node', name: this.opts.nodeName, uid: this.opts.nodeName },
      ...(note !== '' ? { note: note.slice(0, MAX_NOTE) } : {}),
    };
    const p = this.send(event, reason).finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  private async send(event: object, reason: string): Promise<void> {
    const attempts = this.opts.attempts ?? 3;
    for (let i = 1; i <= attempts; i++) {
      const kc = this.opts.kubeConfig();
      if (kc === undefined || this.controller.signal.aborted) return;
      try {
        await apiRequest(kc, {
          method: 'POST', path: '/apis/events.k8s.io/v1/namespaces/default/events', body: event,
          signal: this.controller.signal, timeoutMs: 10_000,
        });
        this.opts.log.info('Recorded event', { reason, regarding: `Node ${this.opts.nodeName}` }, 4);
        return;
      } catch (err) {
        if (this.controller.signal.aborted) return;
        if (i === attempts) {
          this.opts.log.warn('could not record an event (kproxy keeps running)', { reason, attempts, err: errorMessage(err) });
          return;
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, this.opts.retryMs ?? 1000);
          this.controller.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
        });
      }
    }
  }

  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  async close(): Promise<void> {
    this.controller.abort();
    await this.flush();
  }
}
