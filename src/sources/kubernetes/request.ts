/**
 * One HTTP request to the API server with the kubeconfig's credentials and TLS settings
 * (client-node's applyToHTTPSOptions), answered as text. Used where client-node's generated
 * clients would re-encode objects (the source's lists keep the server's JSON as sent) and for
 * events. Non-2xx answers reject with an HttpError carrying the Status message.
 */
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { isRecord } from '../convert.js';

export class HttpError extends Error {
  constructor(readonly statusCode: number, message: string) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface ApiRequest {
  readonly method: 'GET' | 'POST';
  /** Path below the server URL, e.g. /api/v1/services. */
  readonly path: string;
  readonly query?: Readonly<Record<string, string | undefined>>;
  /** Sent as JSON. */
  readonly body?: unknown;
  readonly signal?: AbortSignal;
  readonly timeoutMs: number;
}

/** Resolves with the body of a 2xx answer. */
export async function apiRequest(kc: KubeConfig, r: ApiRequest): Promise<string> {
  const server = kc.getCurrentCluster()?.server ?? '';
  const url = new URL(server.replace(/\/+$/, '') + r.path);
  for (const [k, v] of Object.entries(r.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
  const options: RequestOptions = { method: r.method, headers: {} };
  await kc.applyToHTTPSOptions(options);
  const payload = r.body === undefined ? undefined : Buffer.from(JSON.stringify(r.body), 'utf8');
  return new Promise<string>((resolve, reject) => {
    const req = (url.protocol === 'http:' ? httpRequest : httpsRequest)(url, {
      ...options,
      agent: false,
      headers: {
        ...options.headers,
        Accept: 'application/json',
        ...(payload !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}),
      },
      ...(r.signal !== undefined ? { signal: r.signal } : {}),
      timeout: r.timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 300) {
          resolve(text);
          return;
        }
        let detail = res.statusMessage ?? '';
        try {
          const status: unknown = JSON.parse(text);
          if (isRecord(status) && typeof status.message === 'string') detail = status.message;
        } catch {
          // not a Status object
        }
        reject(new HttpError(code, detail));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${r.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
