/**
 * Tiny demo "pods": an HTTP server that answers with its own name, and a UDP echo server
 * that prefixes its name. Used by `npm start` and by tests.
 */
import * as dgram from 'node:dgram';
import * as http from 'node:http';

export interface DemoPod {
  readonly name: string;
  readonly ip: string;
  close(): Promise<void>;
}

export async function startHttpPod(name: string, ip: string, port: number): Promise<DemoPod> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', Connection: 'close' });
    res.end(`hello from ${name} (${ip}:${port}); you are ${req.socket.remoteAddress ?? '?'}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => resolve());
  });
  return {
    name, ip,
    close: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

export async function startUdpEchoPod(name: string, ip: string, port: number): Promise<DemoPod> {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => sock.send(Buffer.concat([Buffer.from(`${name}: `), msg]), rinfo.port, rinfo.address));
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, ip, () => resolve());
  });
  return { name, ip, close: () => new Promise((r) => sock.close(() => r())) };
}
