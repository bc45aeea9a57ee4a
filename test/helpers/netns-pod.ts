/**
 * A "pod" process for kernel tests, started inside a network namespace:
 *   node dist/test/helpers/netns-pod.js --name pod-a --tcp 127.0.0.11:8080 --udp 127.0.0.11:5353
 * TCP: greets each connection with `<name> <client ip>:<client port>\n` and closes it.
 * With --hold, TCP connections stay open after the greeting until the client closes them (so
 * the kernel counts them as active, e.g. IPVS's least-connection schedulers), and echo back
 * whatever the client sends; --tcp-hold IP:PORT does the same for one listener only.
 * UDP: answers each datagram with `<name>: <datagram>`.
 * Prints `ready` once every socket listens. Bounded: exits by itself after --max-ms (default
 * 120 s), when its stdin closes (the test process is gone), or on SIGTERM/SIGINT.
 * Run with no arguments (as `node --test dist/` does with every file under test/) it exits 0.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

interface PodArgs {
  name: string;
  tcp: { ip: string; port: number; hold: boolean }[];
  udp: { ip: string; port: number }[];
  maxMs: number;
  hold: boolean;
}

function parseAddr(v: string | undefined, flag: string): { ip: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(v ?? '');
  if (!m?.[1] || !m[2]) throw new Error(`${flag} needs IP:PORT, got ${JSON.stringify(v)}`);
  return { ip: m[1], port: Number(m[2]) };
}

function parseArgs(argv: readonly string[]): PodArgs {
  const out: PodArgs = { name: 'pod', tcp: [], udp: [], maxMs: 120_000, hold: false };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    if (flag === '--hold') {
      out.hold = true;
      i--;
      continue;
    }
    const v = argv[i + 1];
    switch (flag) {
      case '--name': out.name = v ?? 'pod'; break;
      case '--tcp': out.tcp.push({ ...parseAddr(v, flag), hold: false }); break;
      case '--tcp-hold': out.tcp.push({ ...parseAddr(v, flag), hold: true }); break;
      case '--udp': out.udp.push(parseAddr(v, flag)); break;
      case '--max-ms': out.maxMs = Number(v); break;
      default: throw new Error(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  return out;
}

async function run(args: PodArgs): Promise<void> {
  const closers: (() => void)[] = [];
  for (const a of args.tcp) {
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      const greeting = `${args.name} ${s.remoteAddress ?? '?'}:${s.remotePort ?? 0}\n`;
      if (!args.hold && !a.hold) return void s.end(greeting);
      s.write(greeting);
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: a.ip, port: a.port, exclusive: true }, () => resolve());
    });
    closers.push(() => server.close());
  }
  for (const a of args.udp) {
    const sock = dgram.createSocket('udp4');
    sock.on('message', (msg, r) => sock.send(Buffer.concat([Buffer.from(`${args.name}: `), msg]), r.port, r.address));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: a.ip, port: a.port, exclusive: true }, () => resolve());
    });
    closers.push(() => sock.close());
  }
  const exit = (): void => {
    for (const c of closers) c();
    process.exit(0);
  };
  setTimeout(exit, args.maxMs).unref();
  // Keep the process alive until stdin ends (the parent is gone) or a signal arrives.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  process.stdin.on('end', exit);
  process.stdin.on('close', exit);
  process.stdin.on('error', exit);
  process.stdin.resume();
  process.once('SIGTERM', exit);
  process.once('SIGINT', exit);
  void keepAlive;
  process.stdout.write('ready\n');
}

const argv = process.argv.slice(2);
if (argv.length > 0) {
  run(parseArgs(argv)).catch((err: unknown) => {
    process.stderr.write(`netns-pod: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
