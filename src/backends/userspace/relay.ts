/**
 * Relays: TCP (accept, choose an endpoint with retry, splice both directions) and UDP
 * (per-client flows with an idle timeout; replies leave from the socket the client used, so
 * they come back from the service address).
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { Protocol } from '../../core/objects.js';
import type { Logger } from '../../observability/log.js';
import type { Balancer, Dest } from './balancer.js';

export interface RelayTarget {
  /** Current balancer (swapped when the service port's endpoints or policy change). */
  balancer(): Balancer | undefined;
  readonly servicePort: string;
  /** The virtual address the scheduler sees as the packet's destination. */
  readonly vip: string;
  readonly vport: number;
  readonly protocol: Protocol;
}

export interface RelayOptions {
  readonly connectTimeoutMs: number;
  readonly udpIdleTimeoutMs: number;
  readonly log: Logger;
  readonly onResult?: (servicePort: string, protocol: Protocol, result: 'ok' | 'no_endpoints' | 'all_failed') => void;
  readonly onFailure?: (servicePort: string, endpoint: string) => void;
}

export function stripV4Mapped(addr: string | undefined): string {
  if (addr === undefined) return '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** Tracks live sockets so a listener can be drained and then forced closed. */
export class ConnectionSet {
  private readonly sockets = new Set<net.Socket>();
  add(s: net.Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }
  get size(): number {
    return this.sockets.size;
  }
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }
}

/** Handles one accepted TCP connection: choose, connect (retrying others on failure), splice. */
export function relayTCP(client: net.Socket, target: RelayTarget, opts: RelayOptions, conns: ConnectionSet): void {
  conns.add(client);
  client.pause();
  client.on('error', () => { /* reported through close; a client reset is not our error */ });
  const clientIP = stripV4Mapped(client.remoteAddress);
  const ctx = { clientIP, clientPort: client.remotePort ?? 0, vip: target.vip, vport: target.vport, protocol: target.protocol };
  const tried = new Set<string>();

  const attempt = (): void => {
    if (client.destroyed) return;
    const balancer = target.balancer();
    const dest = balancer?.pick(ctx, tried);
    if (!balancer || !dest) {
      const result = tried.size === 0 ? 'no_endpoints' : 'all_failed';
      opts.onResult?.(target.servicePort, target.protocol, result);
      opts.log.info('closing connection: no endpoint available', { servicePort: target.servicePort, client: clientIP, tried: [...tried] }, 2);
      client.resetAndDestroy();
      return;
    }
    tried.add(dest.key);
    balancer.opened(dest, 'active');
    let connected = false;
    let counted = true;
    const release = (): void => {
      if (counted) {
        counted = false;
        balancer.closed(dest, 'active');
      }
    };
    const upstream = net.connect({ host: dest.ip, port: dest.port, timeout: opts.connectTimeoutMs });
    conns.add(upstream);
    const failed = (why: string): void => {
      if (connected) return;
      release();
      upstream.destroy();
      balancer.markFailed(dest);
      balancer.forgetClient(clientIP);
      opts.onFailure?.(target.servicePort, dest.key);
      opts.log.info('endpoint failed; trying another', { servicePort: target.servicePort, endpoint: dest.key, reason: why }, 2);
      attempt();
    };
    upstream.once('timeout', () => failed('connect timeout'));
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      if (!connected) failed(err.code ?? err.message);
    });
    upstream.once('connect', () => {
      connected = true;
      upstream.setTimeout(0);
      opts.onResult?.(target.servicePort, target.protocol, 'ok');
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      upstream.once('close', () => {
        release();
        if (!client.destroyed) client.end();
      });
      client.once('close', () => {
        if (!upstream.destroyed) upstream.end();
      });
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  };
  attempt();
}

interface Flow {
  readonly upstream: dgram.Socket;
  /** Datagrams that arrived before the upstream socket finished connecting. */
  queue: Buffer[] | undefined;
  readonly dest: Dest;
  readonly balancer: Balancer;
  timer: NodeJS.Timeout;
}

/**
 * UDP service listener: each client address:port gets its own flow (an upstream socket
 * connected to one endpoint) until it is idle for udpIdleTimeoutMs.
 */
export class UDPRelay {
  private readonly flows = new Map<string, Flow>();
  private closed = false;

  constructor(
    private readonly socket: dgram.Socket,
    private readonly target: RelayTarget,
    private readonly opts: RelayOptions,
  ) {
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
  }

  get flowCount(): number {
    return this.flows.size;
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = this.flows.get(key);
    if (!flow) {
      flow = this.openFlow(key, rinfo);
      if (!flow) return;
    }
    flow.timer.refresh();
    if (flow.queue) flow.queue.push(msg);
    else flow.upstream.send(msg);
  }

  private openFlow(key: string, rinfo: dgram.RemoteInfo): Flow | undefined {
    const balancer = this.target.balancer();
    const clientIP = stripV4Mapped(rinfo.address);
    const dest = balancer?.pick({ clientIP, clientPort: rinfo.port, vip: this.target.vip, vport: this.target.vport, protocol: 'UDP' });
    if (!balancer || !dest) {
      this.opts.onResult?.(this.target.servicePort, 'UDP', 'no_endpoints');
      return undefined;
    }
    const upstream = dgram.createSocket(dest.ip.includes(':') ? 'udp6' : 'udp4');
    balancer.opened(dest, 'inactive');
    const flow: Flow = {
      upstream, dest, balancer, queue: [],
      timer: setTimeout(() => this.closeFlow(key, flow), this.opts.udpIdleTimeoutMs),
    };
    upstream.connect(dest.port, dest.ip, () => {
      const queued = flow.queue ?? [];
      flow.queue = undefined;
      for (const m of queued) upstream.send(m);
    });
    upstream.on('message', (reply) => {
      flow.timer.refresh();
      if (!this.closed) this.socket.send(reply, rinfo.port, rinfo.address);
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      // ECONNREFUSED: the kernel got ICMP port unreachable from the endpoint.
      balancer.markFailed(dest);
      balancer.forgetClient(clientIP);
      this.opts.onFailure?.(this.target.servicePort, dest.key);
      this.opts.log.info('UDP endpoint failed; the next datagram picks another', { servicePort: this.target.servicePort, endpoint: dest.key, reason: err.code ?? err.message }, 2);
      this.closeFlow(key, flow);
    });
    this.flows.set(key, flow);
    this.opts.onResult?.(this.target.servicePort, 'UDP', 'ok');
    return flow;
  }

  private closeFlow(key: string, flow: Flow): void {
    if (this.flows.get(key) !== flow) return;
    this.flows.delete(key);
    clearTimeout(flow.timer);
    flow.balancer.closed(flow.dest, 'inactive');
    try {
      flow.upstream.close();
    } catch {
      /* already closed */
    }
  }

  /** Stops relaying and closes every flow and the listening socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [k, f] of [...this.flows]) this.closeFlow(k, f);
    try {
      this.socket.close();
    } catch {
      /* already closed */
    }
  }
}
