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

/**
 * Bytes queued in user space towards one side before the other side stops being read. Above
 * Node's default (16 KiB, less than one 64 KiB read) so bulk transfers do not stop and restart
 * reading (two epoll_ctl calls) on every chunk; small enough to bound memory per connection.
 */
export const RELAY_HIGH_WATER = 1 << 20;

/** Socket options for both sides of a relayed TCP connection. */
export const RELAY_SOCKET_OPTIONS = {
  // Each direction ends on its own: a client that half-closes still gets the whole reply.
  allowHalfOpen: true,
  // Bytes go on as they come: the ends' own Nagle already decided when to send them.
  noDelay: true,
} as const;

/**
 * Copies `src` into `dst` with backpressure; src's end of stream half-closes dst. A manual copy,
 * not `pipe()`: pipe adds six listeners and an unpipe protocol per direction, and pauses at
 * Node's 16 KiB mark.
 */
function forward(src: net.Socket, dst: net.Socket): void {
  src.on('data', (chunk: Buffer) => {
    dst.write(chunk);
    if (dst.writableLength > RELAY_HIGH_WATER) src.pause();
  });
  dst.on('drain', () => {
    if (src.isPaused()) src.resume();
  });
  src.once('end', () => {
    if (!dst.writableEnded) dst.end();
  });
}

const READ_BUFFER_SIZE = 64 * 1024;
const READ_BUFFER_POOL_MAX = 256;
const readBufferPool: Buffer[] = [];

/**
 * Reads from the endpoint go into one reused buffer per connection (Node's `onread`), taken from
 * a small pool: without it every 64 KiB read allocates a fresh buffer, and in a bulk transfer the
 * allocations and the garbage collection they cause are a large share of the relay's CPU.
 * A chunk is written to the client straight from that buffer; if the kernel did not take it all
 * at once, reading stops (the buffer is still referenced by the pending write) until the client
 * drains.
 */
interface UpstreamReader {
  readonly onread: net.OnReadOpts;
  /** True while reading is stopped for a pending write to the client. */
  stalled: boolean;
  /** Gives the buffer back to the pool; only once no read or write can touch it any more. */
  release(): void;
}

function upstreamReader(client: net.Socket): UpstreamReader {
  const buffer = readBufferPool.pop() ?? Buffer.allocUnsafe(READ_BUFFER_SIZE);
  let released = false;
  const reader: UpstreamReader = {
    stalled: false,
    onread: {
      buffer,
      callback: (n: number, buf: Uint8Array): boolean => {
        if (client.destroyed) return false;
        client.write((buf as Buffer).subarray(0, n));
        if (client.writableLength === 0) return true;
        reader.stalled = true;
        return false;
      },
    },
    release(): void {
      if (released) return;
      released = true;
      if (readBufferPool.length < READ_BUFFER_POOL_MAX) readBufferPool.push(buffer);
    },
  };
  return reader;
}

/** Handles one accepted TCP connection: choose, connect (retrying others on failure), splice. */
export function relayTCP(client: net.Socket, target: RelayTarget, opts: RelayOptions, conns: ConnectionSet): void {
  conns.add(client);
  client.pause();
  // Reported through close; a client reset is not our error. After the upstream connection is
  // up, an error on either side ends both.
  let peer: net.Socket | undefined;
  client.on('error', () => peer?.destroy());
  // The client's address costs a getpeername(2): only schedulers and affinity that use it ask.
  let clientIP: string | undefined;
  const ctx = {
    get clientIP(): string {
      return (clientIP ??= stripV4Mapped(client.remoteAddress));
    },
    get clientPort(): number {
      return client.remotePort ?? 0;
    },
    vip: target.vip, vport: target.vport, protocol: target.protocol,
  };
  const tried = new Set<string>();

  const attempt = (): void => {
    if (client.destroyed) return;
    const balancer = target.balancer();
    const dest = balancer?.pick(ctx, tried);
    if (!balancer || !dest) {
      const result = tried.size === 0 ? 'no_endpoints' : 'all_failed';
      opts.onResult?.(target.servicePort, target.protocol, result);
      opts.log.info('closing connection: no endpoint available', { servicePort: target.servicePort, client: ctx.clientIP, tried: [...tried] }, 2);
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
    const reader = upstreamReader(client);
    const upstream = net.connect({ host: dest.ip, port: dest.port, timeout: opts.connectTimeoutMs, onread: reader.onread, ...RELAY_SOCKET_OPTIONS });
    conns.add(upstream);
    // The read buffer is free once the endpoint can read into it no more and the client's
    // writes from it are over (or cancelled): when both sockets have closed.
    let closes = 0;
    const closed = (): void => {
      if (++closes === 2) reader.release();
    };
    upstream.once('close', closed);
    client.once('close', closed);
    const failed = (why: string): void => {
      if (connected) return;
      release();
      upstream.destroy();
      balancer.markFailed(dest);
      balancer.forgetClient(ctx.clientIP);
      opts.onFailure?.(target.servicePort, dest.key);
      opts.log.info('endpoint failed; trying another', { servicePort: target.servicePort, endpoint: dest.key, reason: why }, 2);
      attempt();
    };
    upstream.once('timeout', () => failed('connect timeout'));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) failed(err.code ?? err.message);
      else client.destroy();
    });
    upstream.once('connect', () => {
      connected = true;
      upstream.setTimeout(0);
      opts.onResult?.(target.servicePort, target.protocol, 'ok');
      upstream.once('close', release);
      if (client.destroyed) {
        // The client went away while we were connecting.
        upstream.destroy();
        return;
      }
      peer = upstream;
      // A side that closes after a clean exchange lets the other finish writing what it has;
      // a side that closes on an error (reset) takes the other down at once.
      upstream.once('close', (hadError) => {
        if (hadError) client.destroy();
        else if (!client.writableEnded) client.end();
      });
      client.once('close', (hadError) => {
        if (hadError) upstream.destroy();
        else if (!upstream.writableEnded) upstream.end();
      });
      forward(client, upstream);
      // The other direction is upstreamReader's: it writes each read to the client and stops
      // reading while a write is pending; the client's drain starts it again.
      client.on('drain', () => {
        if (reader.stalled) {
          reader.stalled = false;
          upstream.resume();
        }
      });
      upstream.once('end', () => {
        if (!client.writableEnded) client.end();
      });
      upstream.resume();
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
