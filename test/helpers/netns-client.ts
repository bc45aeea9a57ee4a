/**
 * A client process for kernel tests, run inside a network namespace; prints one JSON line.
 *   node dist/test/helpers/netns-client.js tcp HOST PORT [COUNT] [TIMEOUT_MS]
 *     COUNT sequential connections; each reads until the server closes.
 *     → {"ok":true,"replies":["<first line of reply>", ...]}
 *   node dist/test/helpers/netns-client.js udp HOST PORT [COUNT] [TIMEOUT_MS]
 *     COUNT datagrams, each from a new socket (a new flow); waits for one reply each.
 *     → {"ok":true,"replies":[{"text":"...","address":"...","port":N}, ...]}
 *   node dist/test/helpers/netns-client.js udp-same HOST PORT [COUNT] [TIMEOUT_MS]
 *     COUNT datagrams from one socket (one conntrack flow).
 *   node dist/test/helpers/netns-client.js session [TIMEOUT_MS]
 *     Reads one JSON command a line from stdin, answers one JSON line each, keeps connections:
 *       {"open":"HOST:PORT","from":"LOCAL_IP"} → {"ok":true,"id":N,"reply":"<first line>"}
 *         (the connection stays open; the server must not close it, e.g. netns-pod --hold)
 *       {"send":N,"text":"..."} → {"ok":true,"reply":"<next line back>"} (an echoing server)
 *       {"close":N} → {"ok":true} once the connection is fully closed
 *       {"close":N,"reset":true} → the same, closing with a RST instead of a FIN
 *     Errors answer {"ok":false,"error":"..."}; the session ends when stdin ends.
 * On failure: {"ok":false,"error":"...","replies":[...so far]} and exit status 1.
 * Every wait is bounded by TIMEOUT_MS (default 3000) per connection/datagram.
 * Run with no arguments (as `node --test dist/` does with every file under test/) it exits 0.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

function tcpOnce(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`tcp ${host}:${port}: no complete reply within ${timeoutMs}ms (got ${JSON.stringify(buf)})`)); }, timeoutMs);
    s.on('data', (d: Buffer) => { buf += d.toString(); });
    s.once('error', (e) => { clearTimeout(timer); reject(new Error(`tcp ${host}:${port}: ${e.message}`)); });
    s.once('close', () => { clearTimeout(timer); resolve(buf.split('\n')[0] ?? ''); });
  });
}

function udpOnce(host: string, port: number, text: string, timeoutMs: number): Promise<{ text: string; address: string; port: number }> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const finish = (fn: () => void): void => { clearTimeout(timer); s.close(); fn(); };
    const timer = setTimeout(() => finish(() => reject(new Error(`udp ${host}:${port}: no reply within ${timeoutMs}ms`))), timeoutMs);
    s.once('message', (msg, r) => finish(() => resolve({ text: msg.toString(), address: r.address, port: r.port })));
    s.once('error', (e) => finish(() => reject(new Error(`udp ${host}:${port}: ${e.message}`))));
    s.send(text, port, host);
  });
}

/** COUNT datagrams from one socket (one flow), one reply each. */
async function udpSame(host: string, port: number, count: number, timeoutMs: number): Promise<{ text: string; address: string; port: number }[]> {
  const s = dgram.createSocket('udp4');
  const out: { text: string; address: string; port: number }[] = [];
  try {
    for (let i = 0; i < count; i++) {
      out.push(await new Promise((resolve, reject) => {
        const timer = setTimeout(() => { s.off('message', on); reject(new Error(`udp ${host}:${port}: no reply within ${timeoutMs}ms`)); }, timeoutMs);
        const on = (msg: Buffer, r: dgram.RemoteInfo): void => { clearTimeout(timer); s.off('message', on); resolve({ text: msg.toString(), address: r.address, port: r.port }); };
        s.on('message', on);
        s.send(`ping ${i}`, port, host);
      }));
    }
  } finally {
    s.close();
  }
  return out;
}

/** The `session` mode: connections opened and closed on command, held open in between. */
async function session(timeoutMs: number): Promise<number> {
  const conns = new Map<number, net.Socket>();
  let next = 0;
  const answer = (v: unknown): void => { process.stdout.write(`${JSON.stringify(v)}\n`); };
  /** Each open connection's unread text; a line read waits for its newline. */
  const pending = new Map<number, { text: string; wake: (() => void) | undefined }>();
  const readLine = (id: number, what: string): Promise<string> => new Promise((resolve, reject) => {
    const p = pending.get(id);
    if (!p) return reject(new Error(`no connection ${id}`));
    const timer = setTimeout(() => { p.wake = undefined; reject(new Error(`connection ${id}: no ${what} within ${timeoutMs}ms (got ${JSON.stringify(p.text)})`)); }, timeoutMs);
    const check = (): void => {
      const nl = p.text.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      p.wake = undefined;
      const line = p.text.slice(0, nl);
      p.text = p.text.slice(nl + 1);
      resolve(line);
    };
    p.wake = check;
    check();
  });
  const open = async (target: string, from: string | undefined): Promise<{ id: number; reply: string }> => {
    const m = /^(.+):(\d+)$/.exec(target);
    if (!m?.[1] || !m[2]) throw new Error(`bad target ${JSON.stringify(target)}`);
    const s = net.connect({ host: m[1], port: Number(m[2]), ...(from ? { localAddress: from } : {}) });
    const id = next++;
    const p: { text: string; wake: (() => void) | undefined } = { text: '', wake: undefined };
    pending.set(id, p);
    s.on('data', (d: Buffer) => { p.text += d.toString(); p.wake?.(); });
    s.on('error', () => undefined); // after the first (answered below), a reset peer is seen on the next send
    const failed = new Promise<never>((_, reject) => s.once('error', (e) => reject(new Error(`tcp ${target} from ${from ?? '?'}: ${e.message}`))));
    failed.catch(() => undefined);
    try {
      const reply = await Promise.race([readLine(id, 'greeting'), failed]);
      conns.set(id, s);
      return { id, reply };
    } catch (err) {
      pending.delete(id);
      s.destroy();
      throw err;
    }
  };
  const send = async (id: number, text: string): Promise<string> => {
    const s = conns.get(id);
    if (!s) throw new Error(`no connection ${id}`);
    s.write(`${text}\n`);
    return readLine(id, 'echo');
  };
  const close = (id: number, reset: boolean): Promise<void> => new Promise((resolve, reject) => {
    const s = conns.get(id);
    if (!s) return reject(new Error(`no connection ${id}`));
    conns.delete(id);
    pending.delete(id);
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`connection ${id}: not closed within ${timeoutMs}ms`)); }, timeoutMs);
    s.once('close', () => { clearTimeout(timer); resolve(); });
    if (reset) s.resetAndDestroy();
    else s.end();
  });
  let buffered = '';
  let chain = Promise.resolve();
  process.stdin.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() === '') continue;
      chain = chain.then(async () => {
        try {
          const cmd = JSON.parse(line) as { open?: string; from?: string; send?: number; text?: string; close?: number; reset?: boolean };
          if (cmd.open !== undefined) answer({ ok: true, ...(await open(cmd.open, cmd.from)) });
          else if (cmd.send !== undefined) answer({ ok: true, reply: await send(cmd.send, cmd.text ?? '') });
          else if (cmd.close !== undefined) { await close(cmd.close, cmd.reset === true); answer({ ok: true }); }
          else answer({ ok: false, error: `unknown command ${line}` });
        } catch (err) {
          answer({ ok: false, error: err instanceof Error ? err.message : String(err) });
        }
      });
    }
  });
  await new Promise<void>((resolve) => { process.stdin.once('end', resolve); process.stdin.once('close', resolve); });
  await chain;
  for (const s of conns.values()) s.destroy();
  return 0;
}

async function run(argv: readonly string[]): Promise<number> {
  const [mode, host, portText, countText, timeoutText] = argv;
  if (mode === 'session') return session(Number(host ?? '3000') > 0 ? Number(host ?? '3000') : 3000);
  const port = Number(portText);
  const count = Number(countText ?? '1');
  const timeoutMs = Number(timeoutText ?? '3000');
  if (mode === 'udp-same' && host && Number.isInteger(port)) {
    try {
      process.stdout.write(`${JSON.stringify({ ok: true, replies: await udpSame(host, port, count, timeoutMs) })}\n`);
      return 0;
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err), replies: [] })}\n`);
      return 1;
    }
  }
  if ((mode !== 'tcp' && mode !== 'udp') || !host || !Number.isInteger(port) || !Number.isInteger(count) || !(timeoutMs > 0)) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: `usage: tcp|udp HOST PORT [COUNT] [TIMEOUT_MS]; got ${JSON.stringify(argv)}`, replies: [] })}\n`);
    return 2;
  }
  const replies: unknown[] = [];
  try {
    for (let i = 0; i < count; i++) {
      replies.push(mode === 'tcp' ? await tcpOnce(host, port, timeoutMs) : await udpOnce(host, port, `ping ${i}`, timeoutMs));
    }
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err), replies })}\n`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify({ ok: true, replies })}\n`);
  return 0;
}

const argv = process.argv.slice(2);
if (argv.length > 0) void run(argv).then((code) => { process.exitCode = code; });
