/** Real-socket helpers for userspace-mode tests: named TCP pods, UDP echo pods, clients. */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

export interface TcpPod {
  readonly name: string;
  readonly port: number;
  readonly connections: number;
  close(): Promise<void>;
}

/** A TCP "pod" that greets each connection with `<name>\n` and then echoes. */
export async function tcpPod(name: string, ip: string, port = 0): Promise<TcpPod> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write(`${name}\n`);
    s.pipe(s);
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, ip, () => res());
  });
  const addr = server.address();
  return {
    name,
    port: typeof addr === 'object' && addr ? addr.port : port,
    get connections() { return connections; },
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

export interface Conn {
  /** The pod's name (its greeting). */
  readonly name: string;
  readonly socket: net.Socket;
  /** Sends text and resolves with the echo. */
  echo(text: string): Promise<string>;
  close(): Promise<void>;
}

/** Connects, waits for the greeting, and keeps the connection open. */
export function connect(ip: string, port: number, localAddress?: string, timeoutMs = 3000): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: ip, port, ...(localAddress ? { localAddress } : {}) });
    let buf = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no greeting from ${ip}:${port} within ${timeoutMs}ms`)); }, timeoutMs);
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.off('data', onData);
      const name = buf.slice(0, nl);
      let rest = buf.slice(nl + 1);
      resolve({
        name, socket,
        echo: (text) => new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error('echo timeout')), timeoutMs);
          const on = (x: Buffer): void => {
            rest += x.toString();
            if (rest.length >= text.length) {
              clearTimeout(t);
              socket.off('data', on);
              const out = rest.slice(0, text.length);
              rest = rest.slice(text.length);
              res(out);
            }
          };
          socket.on('data', on);
          socket.write(text);
        }),
        close: () => new Promise((r) => {
          if (socket.destroyed) return r();
          socket.once('close', () => r());
          socket.end();
        }),
      });
    };
    socket.on('data', onData);
    socket.once('error', (e) => { clearTimeout(timer); reject(e); });
    socket.once('close', () => { clearTimeout(timer); reject(new Error(`connection to ${ip}:${port} closed before a greeting`)); });
  });
}

/** Connects, reads the greeting, closes; returns the pod's name. */
export async function who(ip: string, port: number, localAddress?: string): Promise<string> {
  const c = await connect(ip, port, localAddress);
  await c.close();
  return c.name;
}

export async function udpEchoPod(name: string, ip: string, port = 0): Promise<{ port: number; close(): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, r) => sock.send(Buffer.concat([Buffer.from(`${name}:`), msg]), r.port, r.address));
  await new Promise<void>((res, rej) => { sock.once('error', rej); sock.bind(port, ip, () => res()); });
  return { port: sock.address().port, close: () => new Promise((r) => sock.close(() => r())) };
}

/** Sends one datagram and waits for one reply; returns the reply and its source. */
export function udpRequest(sock: dgram.Socket, ip: string, port: number, text: string, timeoutMs = 2000): Promise<{ reply: string; from: string }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { sock.off('message', on); reject(new Error('no UDP reply')); }, timeoutMs);
    const on = (msg: Buffer, r: dgram.RemoteInfo): void => {
      clearTimeout(t);
      sock.off('message', on);
      resolve({ reply: msg.toString(), from: `${r.address}:${r.port}` });
    };
    sock.on('message', on);
    sock.send(text, port, ip);
  });
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 3000, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
}
