/**
 * The two HTTP servers upstream runs: healthz (/healthz, /livez; default 0.0.0.0:10256) and
 * metrics (/metrics, /proxyMode, /healthz; default 127.0.0.1:10249).
 */
import { createServer, type Server } from 'node:http';
import { KproxyError } from '../core/errors.js';
import { healthBody, type ProxierHealth } from './health.js';
import type { ProxyMetrics } from './metrics.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface RunningServer {
  readonly address: HostPort;
  close(): Promise<void>;
}

function listen(server: Server, at: HostPort, what: string): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new KproxyError('KP_ERR_SERVER_LISTEN', `cannot serve ${what} on ${at.host}:${at.port}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      const a = server.address();
      const port = a !== null && typeof a === 'object' ? a.port : at.port;
      let closed: Promise<void> | undefined;
      resolve({
        address: { host: at.host, port },
        close: () => (closed ??= new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        })),
      });
    });
  });
}

export function serveHealthz(at: HostPort, health: ProxierHealth): Promise<RunningServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/livez') {
      const s = path === '/healthz' ? health.healthz() : health.livez();
      res.writeHead(s.healthy ? 200 : 503, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
      res.end(healthBody(s));
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('404 page not found\n');
  });
  return listen(server, at, 'healthz');
}

export function serveMetrics(at: HostPort, metrics: ProxyMetrics, mode: () => string, health: ProxierHealth): Promise<RunningServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      metrics.text().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' });
          res.end(String(err));
        },
      );
      return;
    }
    if (path === '/proxyMode') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(mode());
      return;
    }
    if (path === '/healthz') {
      const s = health.livez();
      res.writeHead(s.healthy ? 200 : 503, { 'Content-Type': 'text/plain' });
      res.end(s.healthy ? 'ok' : 'unhealthy');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('404 page not found\n');
  });
  return listen(server, at, 'metrics');
}
