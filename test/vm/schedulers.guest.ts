/**
 * Inside the IPVS VM: every IPVS scheduler's choices on a real kernel equal src/scheduling's on
 * the same inputs (issue 5: one table, two implementations, same answers).
 *
 * Each scheduler gets a firewall-mark virtual service (so one service sees four destination
 * addresses: dh, lblc and lblcr hash on the address a packet was sent to) with three weighted
 * real servers, added the way IPVS lists them; all eleven services run the script side by side; the shared script (test/scheduling/fixtures.ts,
 * also run through the userspace proxy) opens connections from eight client addresses (sh, mh
 * hash on the source), holding some open and closing others (lc, wlc, sed, nq, lblc*). Before
 * each connection the kernel's own counters (ipvsadm ActiveConn/InActConn: closed connections
 * stay inactive while in TIME_WAIT) are handed to our implementation, which then predicts the
 * real server; the real server the kernel picked answers with its name.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SCHEDULER_NAMES, type SchedulerName } from '../../src/core/annotations.js';
import { cleanupStaleNetns, kernelTestGate } from '../../src/platform/netns.js';
import { createScheduler, kernelListOrder } from '../../src/scheduling/index.js';
import type { SchedDest, Scheduler } from '../../src/scheduling/scheduler.js';
import { clientSession, pollUntil, type SessionAnswer } from '../helpers/netns-util.js';
import { assertInGuest, CLIENT_IPS, ipvsTopology, SERVER_PORT, type IpvsTopology } from '../helpers/vm-guest.js';
import { SCHED_SCRIPT, SCHED_WEIGHTS } from '../scheduling/fixtures.js';

const SERVERS = ['p1', 'p2', 'p3'];

interface Dest extends SchedDest {
  activeConns: number;
  inactiveConns: number;
  readonly name: string;
}

/** Real servers by firewall-mark service, in the kernel's list order, with their counters. */
async function kernelTable(topo: IpvsTopology): Promise<Map<number, { ip: string; active: number; inactive: number; weight: number }[]>> {
  const out = await topo.lbExec('ipvsadm', ['-Ln', '--exact']);
  const table = new Map<number, { ip: string; active: number; inactive: number; weight: number }[]>();
  let current: { ip: string; active: number; inactive: number; weight: number }[] | undefined;
  for (const l of out.split('\n')) {
    const svc = /^FWM\s+(\d+)\s/.exec(l);
    if (svc) {
      current = [];
      table.set(Number(svc[1]), current);
      continue;
    }
    const m = /^\s+->\s+([\d.]+):(\d+)\s+\w+\s+(\d+)\s+(\d+)\s+(\d+)/.exec(l);
    if (m && current) current.push({ ip: m[1] ?? '', weight: Number(m[3]), active: Number(m[4]), inactive: Number(m[5]) });
  }
  return table;
}

/** One scheduler's service: firewall mark k+1 for packets to 198.18.(96+k).0/29. */
interface Run {
  readonly name: SchedulerName;
  readonly mark: number;
  readonly sched: Scheduler;
  readonly others: Map<SchedulerName, Scheduler>;
  list: Dest[];
  readonly kernel: string[];
  readonly ours: string[];
  readonly otherPicks: Map<SchedulerName, string[]>;
  readonly states: string[];
  readonly ids: number[];
}
const dst = (k: number, to: number): string => `198.18.${96 + k}.${1 + to}`;

/**
 * Runs the script on every scheduler at once, each on its own service, step by step: one read
 * of the kernel's counters per step serves all of them (each service has its own counters).
 */
async function agreement(topo: IpvsTopology, send: (cmd: object) => Promise<SessionAnswer>): Promise<Run[]> {
  const now = (): number => Math.floor(performance.now());
  const runs: Run[] = SCHEDULER_NAMES.map((name, k) => ({
    name, mark: k + 1, sched: createScheduler(name, { now }),
    others: new Map(SCHEDULER_NAMES.filter((n) => n !== name).map((n) => [n, createScheduler(n, { now })])),
    list: [], kernel: [], ours: [], otherPicks: new Map(SCHEDULER_NAMES.filter((n) => n !== name).map((n) => [n, []])), states: [], ids: [],
  }));
  // Every 198.18.96.0/20 address is local to the director, so IPVS (at LOCAL_IN) sees them.
  await topo.lbExec('ip', ['route', 'add', 'local', '198.18.96.0/20', 'dev', 'lo']);
  for (const r of runs) {
    await topo.lbExec('iptables', ['-w', '5', '-t', 'mangle', '-A', 'PREROUTING', '-d', `${dst(r.mark - 1, 0)}/29`, '-p', 'tcp', '--dport', '80', '-j', 'MARK', '--set-mark', String(r.mark)]);
  }
  // Our schedulers see the same add_dest events: the kernel links each added real server at
  // the head of its list, so adding p3, p2, p1 lists them p1, p2, p3.
  const servers: Dest[] = topo.servers.map((s, i) => ({
    name: s.name, key: `${s.ip}:${SERVER_PORT}`, ip: s.ip, port: SERVER_PORT, weight: SCHED_WEIGHTS[i] ?? 1, activeConns: 0, inactiveConns: 0, overloaded: false,
  }));
  const restore: string[] = [];
  for (const r of runs) {
    restore.push(`-A -f ${r.mark} -s ${r.name}`);
    for (const d of [...servers].reverse()) {
      restore.push(`-a -f ${r.mark} -r ${d.ip}:${SERVER_PORT} -m -w ${d.weight}`);
      const own = { ...d };
      r.list = kernelListOrder(r.list, [...r.list, own]);
      r.sched.update(r.list);
      for (const o of r.others.values()) o.update(r.list);
    }
  }
  await topo.lb.execOk('ipvsadm-restore', [], { input: `${restore.join('\n')}\n`, timeoutMs: 30_000 });
  const initial = await kernelTable(topo);
  for (const r of runs) assert.deepEqual(initial.get(r.mark)?.map((d) => d.ip), r.list.map((d) => d.ip), `${r.name}: the kernel lists the real servers as we model`);

  let openCount = 0;
  for (const step of SCHED_SCRIPT) {
    if ('open' in step) {
      const from = CLIENT_IPS[step.open] ?? '';
      const table = await kernelTable(topo);
      for (const r of runs) {
        const to = dst(r.mark - 1, step.to);
        for (const d of r.list) {
          const k = table.get(r.mark)?.find((c) => c.ip === d.ip);
          assert.ok(k, `${r.name}: ${d.ip} missing from the kernel's service`);
          d.activeConns = k.active;
          d.inactiveConns = k.inactive;
        }
        r.states.push(r.list.map((d) => `${d.name}:${d.activeConns}/${d.inactiveConns}`).join(' '));
        const ctx = { clientIP: from, clientPort: 0, vip: to, vport: 80, protocol: 'TCP' } as const;
        const nameOf = (d: SchedDest | undefined): string => r.list.find((x) => x.key === d?.key)?.name ?? '-';
        r.ours.push(nameOf(r.sched.schedule(r.list, ctx)));
        for (const [n, o] of r.others) r.otherPicks.get(n)?.push(nameOf(o.schedule(r.list, ctx)));
        const res = await send({ open: `${to}:80`, from });
        assert.ok(res.ok && res.id !== undefined, `${r.name}: connection from ${from} to ${to}:80: ${res.error ?? ''}`);
        r.ids.push(res.id);
        r.kernel.push(res.reply?.split(' ')[0] ?? '?');
      }
      openCount++;
    } else {
      for (const r of runs) {
        const id = r.ids[step.close];
        assert.ok(id !== undefined);
        const res = await send({ close: id });
        assert.ok(res.ok, `${r.name}: close: ${res.error ?? ''}`);
      }
      openCount--;
      // The next choice must see the closes: wait until the kernel moved them off ActiveConn.
      await pollUntil(`the kernel to count ${openCount} active connections in every service`, async () => {
        const table = await kernelTable(topo);
        return runs.every((r) => (table.get(r.mark) ?? []).reduce((n, d) => n + d.active, 0) === openCount);
      }, { timeoutMs: 10_000, stepMs: 50 });
    }
  }
  for (const r of runs) for (const id of r.ids) await send({ close: id });
  return runs;
}

test('guest: every IPVS scheduler picks the same real servers as src/scheduling on the shared script', { timeout: 900_000 }, async (t) => {
  assertInGuest();
  if (!(await kernelTestGate(t, { tools: ['ipvsadm', 'ipvsadm-restore', 'iptables'] }))) return;
  await cleanupStaleNetns('vm-sched-lb');
  const topo = await ipvsTopology('vm-sched', SERVERS, { hold: true });
  try {
    const client = clientSession(topo.client, 10_000);
    const runs = await agreement(topo, client.send);
    client.end();
    for (const r of runs) {
      await t.test(r.name, (st) => {
        assert.equal(r.kernel.length, SCHED_SCRIPT.filter((s) => 'open' in s).length);
        const same = [...r.otherPicks].filter(([, picks]) => picks.join() === r.kernel.join()).map(([n]) => n);
        st.diagnostic(`kernel ${r.kernel.join(' ')}; other schedulers choosing the same on these inputs: ${same.join(' ') || 'none'}`);
        assert.deepEqual(r.ours, r.kernel, `${r.name}: ours vs the kernel's choices; counters (active/inactive) before each:\n${r.states.map((s, j) => `  ${j}: ${s} kernel=${r.kernel[j]} ours=${r.ours[j]}`).join('\n')}`);
      });
    }
  } finally {
    await topo.destroy();
  }
});
