/** userspace mode over real sockets on 127.0.0.0/8: retry, affinity, UDP, endpoint changes, bad input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { SCHEDULER_NAMES } from '../../../src/core/annotations.js';
import { ep, slice, svc } from '../../helpers/objects.js';
import { connect, tcpPod, udpEchoPod, udpRequest, waitFor, who, type TcpPod } from '../../helpers/net.js';
import { harness } from '../../helpers/userspace.js';

const PODS = ['127.0.33.1', '127.0.33.2', '127.0.33.3'];

async function pods(port: number): Promise<TcpPod[]> {
  const out: TcpPod[] = [];
  for (const [i, ip] of PODS.entries()) out.push(await tcpPod(`p${i + 1}`, ip, port));
  return out;
}

test('retry: with one of three endpoints down, 300 sequential connections all succeed', async () => {
  const h = harness({ cooldownMs: 10_000 });
  const up = [await tcpPod('p1', PODS[0] ?? '', 9301), await tcpPod('p3', PODS[2] ?? '', 9301)];
  try {
    await h.apply(
      { kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: '127.0.34.1' }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', PODS.map((ip) => ep(ip)), { port: 9301 }) },
    );
    const seen = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const name = await who('127.0.34.1', 80);
      seen.set(name, (seen.get(name) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), ['p1', 'p3']);
    assert.equal((seen.get('p1') ?? 0) + (seen.get('p3') ?? 0), 300);
    // The dead endpoint was tried once, then passed over for the cool-down (the clock never moved).
    assert.match(await h.metrics.text(), /kproxy_userspace_endpoint_failures_total\{service_port="ns1\/web:http",endpoint="127\.0\.33\.2:9301"\} 1\n/);
    // After the cool-down it is tried again (once), and still every connection succeeds.
    await h.clock.advance(10_001);
    for (let i = 0; i < 6; i++) assert.match(await who('127.0.34.1', 80), /^p[13]$/);
    assert.match(await h.metrics.text(), /endpoint="127\.0\.33\.2:9301"\} 2\n/);
  } finally {
    await h.close();
    for (const p of up) await p.close();
  }
});

for (const sched of SCHEDULER_NAMES) {
  test(`retry with ${sched}: whichever endpoint is down, every connection from every client succeeds`, async () => {
    for (const down of [0, 1, 2]) {
      const h = harness({ scheduler: sched });
      const port = 9320 + down;
      const up: TcpPod[] = [];
      for (const [i, ip] of PODS.entries()) if (i !== down) up.push(await tcpPod(`p${i + 1}`, ip, port));
      try {
        await h.apply(
          { kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: '127.0.34.11' }) },
          { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', PODS.map((ip) => ep(ip)), { port }) },
        );
        for (let i = 0; i < 30; i++) {
          const name = await who('127.0.34.11', 80, `127.0.39.${(i % 10) + 1}`);
          assert.notEqual(name, `p${down + 1}`);
        }
      } finally {
        await h.close();
        for (const p of up) await p.close();
      }
    }
  });
}

test('ClientIP affinity: each client keeps its endpoint until the timeout since its last connection', async () => {
  const h = harness();
  const ps = await pods(9303);
  try {
    await h.apply(
      { kind: 'Service', type: 'add', object: svc('ns1', 'sticky', { clusterIP: '127.0.34.3', sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 's', 'sticky', PODS.map((ip) => ep(ip)), { port: 9303 }) },
    );
    const clients = ['127.0.36.1', '127.0.36.2', '127.0.36.3'];
    const first = new Map<string, string>();
    for (const c of clients) first.set(c, await who('127.0.34.3', 80, c));
    assert.deepEqual([...first.values()], ['p1', 'p2', 'p3'], 'new clients are scheduled round robin');
    for (let round = 0; round < 10; round++) {
      for (const c of clients) assert.equal(await who('127.0.34.3', 80, c), first.get(c), `round ${round} ${c}`);
      await h.clock.advance(59_000); // each connection refreshes the timeout
    }
    await h.clock.advance(61_000);
    // rr's cursor is on p3; a new client takes p1, then the expired client is scheduled afresh: p2.
    assert.equal(await who('127.0.34.3', 80, '127.0.36.9'), 'p1');
    assert.equal(await who('127.0.34.3', 80, '127.0.36.1'), 'p2', 'after the timeout the client is scheduled afresh');
    assert.equal(await who('127.0.34.3', 80, '127.0.36.1'), 'p2', 'and sticks to its new endpoint');
  } finally {
    await h.close();
    for (const p of ps) await p.close();
  }
});

test('UDP: 100 datagrams from 5 clients are echoed, replies come from the service address, flows spread rr', async () => {
  const h = harness({ udpIdleTimeoutMs: 2000 });
  const echoes = [await udpEchoPod('u1', PODS[0] ?? '', 9304), await udpEchoPod('u2', PODS[1] ?? '', 9304)];
  const clients: dgram.Socket[] = [];
  try {
    await h.apply(
      { kind: 'Service', type: 'add', object: svc('ns1', 'dns', { clusterIP: '127.0.34.4', ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 9304, nodePort: 0 }] }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'd', 'dns', [ep(PODS[0] ?? ''), ep(PODS[1] ?? '')], { port: 9304, portName: 'dns', protocol: 'UDP' }) },
    );
    for (let i = 0; i < 5; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      clients.push(s);
    }
    const perClient = new Map<number, Set<string>>();
    let ok = 0;
    for (let n = 0; n < 20; n++) {
      for (const [i, s] of clients.entries()) {
        const { reply, from } = await udpRequest(s, '127.0.34.4', 53, `c${i}-${n}`);
        assert.equal(from, '127.0.34.4:53');
        const [pod, body] = reply.split(':');
        assert.equal(body, `c${i}-${n}`);
        perClient.set(i, (perClient.get(i) ?? new Set()).add(pod ?? ''));
        ok++;
      }
    }
    assert.equal(ok, 100);
    // Each client is one flow, pinned to one endpoint; flows were scheduled rr: u1, u2, u1, u2, u1.
    assert.deepEqual([...perClient.values()].map((s) => [...s].join()), ['u1', 'u2', 'u1', 'u2', 'u1']);
    const gauge = await h.metrics.text();
    assert.match(gauge, /kproxy_userspace_endpoint_active_connections\{service_port="ns1\/dns:dns",protocol="UDP",endpoint="127\.0\.33\.1:9304"\} 3/);
  } finally {
    for (const s of clients) s.close();
    await h.close();
    for (const e of echoes) await e.close();
  }
});

test('endpoint removal: open connections survive; new ones go to the remaining endpoints; ready beats terminating', async () => {
  const h = harness();
  const ps = await pods(9305);
  try {
    const service = svc('ns1', 'web', { clusterIP: '127.0.34.5' });
    const s1 = slice('ns1', 'w', 'web', PODS.map((ip) => ep(ip)), { port: 9305 });
    await h.apply({ kind: 'Service', type: 'add', object: service }, { kind: 'EndpointSlice', type: 'add', object: s1 });
    const held = await connect('127.0.34.5', 80);
    assert.equal(held.name, 'p1');
    const s2 = slice('ns1', 'w', 'web', [ep(PODS[0] ?? '', { ready: false, serving: true, terminating: true }), ep(PODS[2] ?? '')], { port: 9305 });
    await h.apply({ kind: 'EndpointSlice', type: 'update', previous: s1, object: s2 });
    assert.equal(await held.echo('still here'), 'still here', 'the open connection to the terminating endpoint keeps working');
    for (let i = 0; i < 4; i++) assert.equal(await who('127.0.34.5', 80), 'p3', 'only the ready endpoint takes new connections');
    const s3 = slice('ns1', 'w', 'web', [ep(PODS[0] ?? '', { ready: false, serving: true, terminating: true }), ep(PODS[1] ?? '', { ready: false, serving: false, terminating: true })], { port: 9305 });
    await h.apply({ kind: 'EndpointSlice', type: 'update', previous: s2, object: s3 });
    assert.equal(await who('127.0.34.5', 80), 'p1', 'no ready endpoint: serving+terminating ones are used');
    await h.apply({ kind: 'Service', type: 'delete', object: service });
    await assert.rejects(who('127.0.34.5', 80), 'the service is gone: its listener is closed');
    assert.equal(await held.echo('after delete'), 'after delete', 'connections outlive their service until they close');
    await held.close();
  } finally {
    await h.close();
    for (const p of ps) await p.close();
  }
});

test('no endpoints: connections are reset at once, counted as no_endpoints', async () => {
  const h = harness();
  try {
    await h.apply({ kind: 'Service', type: 'add', object: svc('ns1', 'empty', { clusterIP: '127.0.34.6' }) });
    await assert.rejects(who('127.0.34.6', 80), /ECONNRESET|closed before a greeting/);
    assert.match(await h.metrics.text(), /kproxy_userspace_connections_total\{service_port="ns1\/empty:http",protocol="TCP",result="no_endpoints"\} 1/);
  } finally {
    await h.close();
  }
});

test('a port already in use is reported clearly and retried; every other service keeps serving', async () => {
  const h = harness();
  const ps = await pods(9307);
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(80, '127.0.34.7', () => r()));
  try {
    await h.apply(
      { kind: 'Service', type: 'add', object: svc('ns1', 'taken', { clusterIP: '127.0.34.7' }) },
      { kind: 'Service', type: 'add', object: svc('ns1', 'fine', { clusterIP: '127.0.34.8' }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 't', 'taken', [ep(PODS[0] ?? '')], { port: 9307 }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'f', 'fine', [ep(PODS[1] ?? '')], { port: 9307 }) },
    );
    assert.equal(h.backend.state.failed.get('TCP|127.0.34.7|80'), 'address already in use (another process holds this port)');
    assert.ok(h.log.lines.some((l) => l.startsWith('E') && l.includes('cannot serve service address') && l.includes('127.0.34.7:80/TCP') && l.includes('address already in use')));
    assert.equal(await who('127.0.34.8', 80), 'p2');
    await new Promise<void>((r) => squatter.close(() => r()));
    await h.apply(); // the periodic resync retries
    assert.equal(h.backend.state.failed.size, 0);
    assert.equal(await who('127.0.34.7', 80), 'p1');
  } finally {
    squatter.close();
    await h.close();
    for (const p of ps) await p.close();
  }
});

test('addresses on this host need no rules; userspace mode never runs iptables for them', async () => {
  const h = harness();
  try {
    await h.apply({ kind: 'Service', type: 'add', object: svc('ns1', 'local', { clusterIP: '127.0.34.9' }) });
    assert.deepEqual(h.backend.state.direct, ['TCP|127.0.34.9|80']);
    assert.equal(h.exec.calls.length, 0);
  } finally {
    await h.close();
  }
});

test('close drains: open connections get the drain time, then are cut; listeners stop at once', async () => {
  const h = harness({ drainTimeoutMs: 300 });
  const ps = await pods(9310);
  try {
    await h.apply(
      { kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: '127.0.34.10' }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep(PODS[0] ?? '')], { port: 9310 }) },
    );
    const held = await connect('127.0.34.10', 80);
    const t0 = Date.now();
    const closing = h.close();
    await waitFor('listener closed', async () => !(await who('127.0.34.10', 80).then(() => true, () => false)), 1000);
    assert.equal(await held.echo('draining'), 'draining');
    await closing;
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 2000, `drain bounded (${took} ms)`);
    await waitFor('held connection cut', () => held.socket.destroyed || held.socket.readableEnded, 1000);
  } finally {
    for (const p of ps) await p.close();
  }
});

test('TCP relay: 3 MB each way arrive intact, and a client that half-closes still gets the whole reply', async () => {
  const h = harness();
  const size = 3 << 20; // above the relay's 1 MiB high-water mark: the backpressure path runs
  const pattern = (seed: number): Buffer => {
    const b = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 255;
    return b;
  };
  const request = pattern(7);
  const reply = pattern(11);
  // The pod reads until the client's FIN, then answers with what it got and a 3 MB reply.
  const pod = net.createServer({ allowHalfOpen: true }, (s) => {
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => {
      const all = Buffer.concat(got);
      s.write(`${all.length} ${all.equals(request) ? 'same' : 'different'}\n`);
      s.end(reply);
    });
  });
  await new Promise<void>((r) => pod.listen(9395, PODS[0], r));
  try {
    await h.apply(
      { kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: '127.0.34.20' }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep(PODS[0] ?? '')], { port: 9395 }) },
    );
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const c = net.connect({ host: '127.0.34.20', port: 80, allowHalfOpen: true });
      const got: Buffer[] = [];
      c.on('data', (d: Buffer) => got.push(d));
      c.on('end', () => resolve(Buffer.concat(got)));
      c.on('error', reject);
      c.setTimeout(10_000, () => c.destroy(new Error('timed out')));
      c.once('connect', () => c.end(request));
    });
    const nl = answer.indexOf(10);
    assert.equal(answer.subarray(0, nl).toString(), `${size} same`);
    assert.ok(answer.subarray(nl + 1).equals(reply), `reply of ${answer.length - nl - 1} bytes equals the ${size} sent`);
  } finally {
    await h.close();
    await new Promise((r) => pod.close(r));
  }
});
