/**
 * Every scheduler, used for real by the userspace proxy over real sockets: the endpoints the
 * proxy picks for a scripted series of connections (some held open, from chosen client
 * addresses) equal what the kernel algorithm picks for the same inputs. The kernel algorithm is
 * src/scheduling (checked against hand-derived kernel sequences in test/scheduling); here a
 * second, independent instance is fed the same counters and must agree step by step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SCHEDULER_NAMES, type SchedulerName } from '../../../src/core/annotations.js';
import { createScheduler } from '../../../src/scheduling/index.js';
import type { SchedDest } from '../../../src/scheduling/scheduler.js';
import { ep, slice, svc } from '../../helpers/objects.js';
import { connect, tcpPod, waitFor, type Conn, type TcpPod } from '../../helpers/net.js';
import { harness } from '../../helpers/userspace.js';
import { SCHED_SCRIPT, SCHED_WEIGHTS } from '../../scheduling/fixtures.js';

const VIP = '127.0.30.1';
const PODS = ['127.0.31.1', '127.0.31.2', '127.0.31.3'];
const WEIGHTS = SCHED_WEIGHTS;
/** The shared script; client number N connects from 127.0.32.N. */
const SCRIPT = SCHED_SCRIPT;
const clientIP = (n: number): string => `127.0.32.${n}`;

/** The kernel algorithm on its own, fed the same sequence. */
function model(name: SchedulerName, port: number): string[] {
  const sched = createScheduler(name, { now: () => 0 });
  const dests = PODS.map((ip, i) => ({ key: `${ip}:${port}`, ip, port, weight: WEIGHTS[i] ?? 1, activeConns: 0, inactiveConns: 0, overloaded: false }));
  sched.update(dests as SchedDest[]);
  const opened: (typeof dests)[number][] = [];
  const chosen: string[] = [];
  for (const step of SCRIPT) {
    if ('open' in step) {
      const d = sched.schedule(dests, { clientIP: clientIP(step.open), clientPort: 40000, vip: VIP, vport: 80, protocol: 'TCP' });
      const dest = dests.find((x) => x.key === d?.key);
      assert.ok(dest, `${name}: model chose nothing`);
      dest.activeConns++;
      opened.push(dest);
      chosen.push(dest.ip);
    } else {
      const d = opened[step.close];
      assert.ok(d);
      d.activeConns--;
    }
  }
  return chosen;
}

for (const name of SCHEDULER_NAMES) {
  test(`userspace proxy with ${name}: chosen endpoints equal the kernel algorithm's`, async () => {
    const pods: TcpPod[] = [];
    const h = harness({ scheduler: name });
    const conns: Conn[] = [];
    try {
      const port = 9100 + SCHEDULER_NAMES.indexOf(name);
      for (const [i, ip] of PODS.entries()) pods.push(await tcpPod(`p${i + 1}`, ip, port));
      await h.apply(
        { kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: VIP }) },
        { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'web-1', 'web', PODS.map((ip) => ep(ip)), {
          port, annotations: { 'kproxy.io/weights': JSON.stringify(Object.fromEntries(PODS.map((ip, i) => [ip, WEIGHTS[i]]))) },
        }) },
      );
      const got: string[] = [];
      for (const step of SCRIPT) {
        if ('open' in step) {
          const c = await connect(VIP, 80, clientIP(step.open));
          conns.push(c);
          got.push(PODS[Number(c.name.slice(1)) - 1] ?? '?');
        } else {
          const c = conns[step.close];
          assert.ok(c);
          await c.close();
          const balancer = h.backend.balancer('ns1/web:http' as never);
          const expected = conns.filter((x) => !x.socket.destroyed).length;
          await waitFor('the proxy to count the close', () => (balancer?.destinations.reduce((n, d) => n + d.activeConns, 0) ?? -1) === expected);
        }
      }
      assert.deepEqual(got, model(name, port));
    } finally {
      for (const c of conns) c.socket.destroy();
      await h.close();
      for (const p of pods) await p.close();
    }
  });
}

test('known kernel sequences hold through the proxy: rr 1,2,3,1,2,3 and wrr 3:1:2', async () => {
  for (const [name, want] of [
    ['rr', ['p1', 'p2', 'p3', 'p1', 'p2', 'p3']],
    // wrr, weights 3,1,2. The service starts empty and the kernel adds each real server at the
    // list head (p3, p2, then p1), calling dest_changed each time: cw = mw = 1 after p3 (w2, di 2),
    // then stays 1. So the first round takes every weight >= 1 (p1 p2 p3), then cw wraps to 3
    // (p1), 2 (p1 p3), 1 (p1 p2 p3).
    ['wrr', ['p1', 'p2', 'p3', 'p1', 'p1', 'p3', 'p1', 'p2', 'p3']],
  ] as const) {
    const h = harness({ scheduler: name });
    const pods: TcpPod[] = [];
    try {
      for (const [i, ip] of PODS.entries()) pods.push(await tcpPod(`p${i + 1}`, ip, 9200));
      await h.apply(
        { kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: VIP }) },
        { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'web-1', 'web', PODS.map((ip) => ep(ip)), {
          port: 9200, annotations: { 'kproxy.io/weights': JSON.stringify(Object.fromEntries(PODS.map((ip, i) => [ip, WEIGHTS[i]]))) },
        }) },
      );
      const got: string[] = [];
      for (let i = 0; i < want.length; i++) {
        const c = await connect(VIP, 80);
        got.push(c.name);
        await c.close();
      }
      assert.deepEqual(got, want, name);
    } finally {
      await h.close();
      for (const p of pods) await p.close();
    }
  }
});

test('lc through the proxy: held connections steer new ones to the least loaded endpoint', async () => {
  const h = harness({ scheduler: 'lc' });
  const pods: TcpPod[] = [];
  const conns: Conn[] = [];
  try {
    for (const [i, ip] of PODS.entries()) pods.push(await tcpPod(`p${i + 1}`, ip, 9201));
    await h.apply(
      { kind: 'Service', type: 'add', object: svc('ns1', 'web', { clusterIP: VIP }) },
      { kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'web-1', 'web', PODS.map((ip) => ep(ip)), { port: 9201 }) },
    );
    for (let i = 0; i < 3; i++) conns.push(await connect(VIP, 80));
    assert.deepEqual(conns.map((c) => c.name), ['p1', 'p2', 'p3'], 'all idle: first in list, then the next least loaded');
    await conns[1]?.close();
    await waitFor('close counted', () => h.backend.balancer('ns1/web:http' as never)?.destinations[1]?.activeConns === 0);
    const c = await connect(VIP, 80);
    conns.push(c);
    assert.equal(c.name, 'p2', 'p2 has no active connection now');
  } finally {
    for (const c of conns) c.socket.destroy();
    await h.close();
    for (const p of pods) await p.close();
  }
});
