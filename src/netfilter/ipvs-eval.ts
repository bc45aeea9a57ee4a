/**
 * The IPVS evaluator for the tracer. IPVS sits in two netfilter hooks: LOCAL_IN at priority 98
 * (ip_vs_remote_request4: after filter INPUT, before nat INPUT) for packets from outside, and
 * LOCAL_OUT at -98 (ip_vs_local_request4: right after nat OUTPUT) for packets of this node. For
 * a packet to a virtual server it shows the lookup, the scheduler's state and choice (the same
 * scheduler code as userspace mode, src/scheduling), and the masquerade-forwarding DNAT; a
 * virtual server without a usable real server answers ICMP port unreachable (ip_vs_leave).
 * Packets from outside then leave through LOCAL_OUT and POSTROUTING (ip_vs_nat_xmit), where
 * KUBE-POSTROUTING may masquerade them. Pure.
 */
import type { SchedulerName } from '../core/annotations.js';
import { isSchedulerName } from '../core/annotations.js';
import type { Protocol as CoreProtocol } from '../core/objects.js';
import type { ParsedVirtualServer } from '../backends/ipvs/kernel-state.js';
import { realServerId } from '../backends/ipvs/kernel-state.js';
import { hostPort } from '../backends/ipvs/model.js';
import { addServiceLine } from '../backends/ipvs/serialize.js';
import { createScheduler, type SchedDest } from '../scheduling/index.js';
import type { EvalContext, PacketState, RulesetEvaluator, Stage, StageOutcome } from './trace.js';

export interface IpvsState {
  readonly servers: readonly ParsedVirtualServer[];
  /** ActiveConn/InActConn per realServerId, when `ipvsadm -Ln` was read; else all 0. */
  readonly connections: ReadonlyMap<string, { readonly active: number; readonly inactive: number }>;
}

/** How many new connections the choice distribution is computed over (per real server). */
const SERIES_PER_DEST = 12;
const MIN_SERIES = 60;

export class IpvsEvaluator implements RulesetEvaluator {
  readonly name = 'ipvs';

  constructor(private readonly state: IpvsState) {}

  stages(): readonly Stage[] {
    return [
      { hook: 'INPUT', priority: 98, label: 'ipvs' },
      { hook: 'OUTPUT', priority: -98, label: 'ipvs' },
    ];
  }

  evaluate(stage: Stage, p: PacketState, ctx: EvalContext): StageOutcome {
    // IPVS handles only the first packet of a connection it has not seen (conntrack NEW, no NAT yet).
    if (p.ct?.dnat === true) {
      ctx.emit({ kind: 'note', text: 'IPVS: the connection is already DNATed; IPVS does not look at it', depth: 0 });
      return { kind: 'accept' };
    }
    const proto = p.protocol.toUpperCase() as CoreProtocol;
    const vs = this.state.servers.find((v) => v.protocol === proto && v.ip === p.dst && v.port === p.dport);
    const spec = `${proto} ${hostPort(p.dst, p.dport)}`;
    if (!vs) {
      ctx.emit({ kind: 'note', text: `IPVS: no virtual server ${spec}; the packet goes on untouched`, depth: 0 });
      return { kind: 'accept' };
    }
    const line = addServiceLine(vs);
    const by = { table: 'ipvs', chain: spec, index: 1, text: line };
    ctx.emit({ kind: 'rule', table: 'ipvs', chain: spec, index: 1, text: line, depth: 0, effect: `virtual server ${spec}, scheduler ${vs.scheduler}${vs.persistence > 0 ? `, persistent ${vs.persistence}s (a client seen within that time goes back to its real server)` : ''}` });
    const dests: SchedDest[] = vs.realServers.map((r) => {
      const c = this.state.connections.get(realServerId(vs, r));
      return { key: hostPort(r.ip, r.port), ip: r.ip, port: r.port, weight: r.weight, activeConns: c?.active ?? 0, inactiveConns: c?.inactive ?? 0, overloaded: false };
    });
    const stateText = dests.length === 0 ? 'no real servers'
      : dests.map((d) => `${d.key} weight ${d.weight} active ${d.activeConns} inactive ${d.inactiveConns}`).join('; ');
    ctx.emit({ kind: 'note', text: `IPVS scheduler state (kernel list order): ${stateText}`, depth: 1 });
    if (!isSchedulerName(vs.scheduler)) {
      ctx.warn(`IPVS scheduler ${JSON.stringify(vs.scheduler)} is not one kproxy models; every real server with weight > 0 counted as equally likely`, 1);
    }
    const series = simulate(vs.scheduler, dests, p, vs.flags.includes('mh-port') || vs.flags.includes('sh-port'));
    if (series.total === 0) {
      ctx.emit({ kind: 'note', text: 'IPVS: no real server can take the connection (none, or all at weight 0): ip_vs_leave answers ICMP port unreachable', depth: 1 });
      return { kind: 'reject', with: 'icmp-port-unreachable (IPVS: no destination)' };
    }
    const dist = [...series.counts].filter(([, n]) => n > 0);
    ctx.emit({
      kind: 'note', depth: 1,
      text: `IPVS ${vs.scheduler}: the next connection goes to ${series.first}; of the next ${series.total} new connections from ${p.src}: ${dist.map(([k, n]) => `${k} ${n}`).join(', ')}`,
    });
    let remaining = series.total;
    for (const [i, [key, n]] of dist.entries()) {
      const last = i === dist.length - 1;
      if (last || ctx.random(n / remaining)) {
        const d = dests.find((x) => x.key === key);
        if (!d) break;
        ctx.emit({ kind: 'note', text: `IPVS masquerade forwarding: DNAT to ${key} (-m); ${p.ct ? 'conntrack records it (net.ipv4.vs.conntrack=1), so nat POSTROUTING can still SNAT' : ''}`.trim(), depth: 1 });
        ctx.setDnat(d.ip, d.port, by);
        // LOCAL_IN: ip_vs_nat_xmit re-sends the packet through LOCAL_OUT (NF_STOLEN); LOCAL_OUT: it continues.
        return stage.hook === 'INPUT' ? { kind: 'stolen', why: 'IPVS took the packet (ip_vs_nat_xmit)' } : { kind: 'accept' };
      }
      remaining -= n;
    }
    return { kind: 'accept' };
  }
}

/**
 * The scheduler's choices for a series of new connections from this client (its source port
 * increasing), starting from the state shown: each chosen real server gets one more active
 * connection, as in the kernel.
 */
function simulate(name: string, dests: readonly SchedDest[], p: PacketState, usePort: boolean): { first: string; total: number; counts: Map<string, number> } {
  const counts = new Map<string, number>(dests.map((d) => [d.key, 0]));
  const usable = dests.filter((d) => d.weight > 0);
  if (usable.length === 0) return { first: '', total: 0, counts };
  const n = Math.max(MIN_SERIES, SERIES_PER_DEST * dests.length);
  if (!isSchedulerName(name)) {
    for (const d of usable) counts.set(d.key, 1);
    return { first: usable[0]?.key ?? '', total: usable.length, counts };
  }
  const sched = createScheduler(name satisfies SchedulerName, { now: () => 0 });
  let list = dests.map((d) => ({ ...d }));
  sched.update(list);
  let first = '';
  let total = 0;
  const sport = p.srcPort ?? 40000;
  for (let i = 0; i < n; i++) {
    const pick = sched.schedule(list, { clientIP: p.src, clientPort: usePort ? sport + i : 0, vip: p.dst, vport: p.dport, protocol: p.protocol.toUpperCase() as CoreProtocol });
    if (!pick) break;
    if (first === '') first = pick.key;
    counts.set(pick.key, (counts.get(pick.key) ?? 0) + 1);
    total++;
    list = list.map((d) => (d.key === pick.key ? { ...d, activeConns: d.activeConns + 1 } : d));
  }
  return { first, total, counts };
}
