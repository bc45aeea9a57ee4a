/**
 * The difference between the model and what the kernel holds, as the three inputs one sync
 * applies: ipvsadm-restore lines, ipset restore lines, and the kube-ipvs0 addresses to add and
 * remove. Graceful termination: a TCP real server that is no longer wanted first gets weight 0
 * and is deleted only once its connections are gone; UDP and SCTP ones are deleted at once
 * (upstream's GracefulTerminationManager). Pure.
 */
import type { ServicePortName } from '../../core/ids.js';
import type { CIDR } from '../../core/ip.js';
import type { IpsetModel, IpvsModel, OwnedVirtualServer, VirtualServer } from './model.js';
import { hostPort, virtualServerKey } from './model.js';
import type { ParsedVirtualServer } from './kernel-state.js';
import { realServerId } from './kernel-state.js';
import { addServiceLine, ipsetCreateLine, realServerLine, serviceSpec } from './serialize.js';

export interface KernelState {
  readonly servers: readonly ParsedVirtualServer[];
  readonly ipsets: ReadonlyMap<string, { readonly type: string; readonly entries: readonly string[] }>;
  /** undefined: kube-ipvs0 does not exist. */
  readonly addresses: readonly string[] | undefined;
  /** ActiveConn + InActConn per realServerId (`ipvsadm -Ln`). */
  readonly connections: ReadonlyMap<string, { readonly active: number; readonly inactive: number }>;
}

/** One ipvsadm-restore line and the service port it is for (undefined: cleanup of a stale one). */
export interface IpvsLine {
  readonly text: string;
  readonly owner: ServicePortName | undefined;
}

export interface IpvsPlan {
  readonly ipvsadm: readonly IpvsLine[];
  readonly ipset: readonly string[];
  readonly addAddresses: readonly string[];
  readonly removeAddresses: readonly string[];
  /** Real servers now at weight 0 waiting for their connections to end (realServerId). */
  readonly terminating: ReadonlySet<string>;
  /** Real servers this plan deletes after they drained. */
  readonly drained: readonly string[];
}

export interface PlanOptions {
  /** --ipvs-exclude-cidrs: virtual servers there are never deleted (someone else's). */
  readonly excludeCIDRs: readonly CIDR[];
  readonly family: 'IPv4' | 'IPv6';
  /** Service ports whose virtual servers are left exactly as the kernel has them (the kernel refused them this sync). */
  readonly frozen?: ReadonlySet<ServicePortName>;
}

function sameService(a: VirtualServer, b: VirtualServer): boolean {
  return a.scheduler === b.scheduler && a.persistence === b.persistence && a.flags.join(',') === b.flags.join(',');
}

export function planIpvs(model: IpvsModel, kernel: KernelState, opts: PlanOptions): IpvsPlan {
  const frozen = opts.frozen ?? new Set<ServicePortName>();
  const lines: IpvsLine[] = [];
  const terminating = new Set<string>();
  const drained: string[] = [];
  const have = new Map(kernel.servers.map((v) => [virtualServerKey(v), v]));
  const want = new Map<string, OwnedVirtualServer>();
  const frozenKeys = new Set<string>();
  for (const vs of model.virtualServers) {
    if (frozen.has(vs.owner)) frozenKeys.add(virtualServerKey(vs));
    else want.set(virtualServerKey(vs), vs);
  }
  const ours = (ip: string): boolean => (opts.family === 'IPv6') === ip.includes(':') && !opts.excludeCIDRs.some((c) => c.contains(ip));

  // Stale virtual servers first: their addresses may be reused by new ones.
  for (const [key, vs] of have) {
    if (want.has(key) || frozenKeys.has(key) || !ours(vs.ip)) continue;
    lines.push({ text: `-D ${serviceSpec(vs)}`, owner: undefined });
  }
  for (const [key, vs] of want) {
    const cur = have.get(key);
    if (!cur) {
      lines.push({ text: addServiceLine(vs), owner: vs.owner });
      for (const rs of vs.realServers) lines.push({ text: realServerLine(vs, rs), owner: vs.owner });
      continue;
    }
    if (!sameService(vs, cur)) lines.push({ text: addServiceLine(vs, '-E'), owner: vs.owner });
    const curRS = new Map(cur.realServers.map((r) => [hostPort(r.ip, r.port), r]));
    for (const rs of vs.realServers) {
      const c = curRS.get(hostPort(rs.ip, rs.port));
      if (!c) lines.push({ text: realServerLine(vs, rs), owner: vs.owner });
      else if (c.weight !== rs.weight || c.forwarding !== 'masq') lines.push({ text: realServerLine(vs, rs, '-e'), owner: vs.owner });
    }
    const wanted = new Set(vs.realServers.map((r) => hostPort(r.ip, r.port)));
    for (const c of cur.realServers) {
      if (wanted.has(hostPort(c.ip, c.port))) continue;
      const id = realServerId(vs, c);
      const conns = kernel.connections.get(id);
      const busy = conns === undefined ? c.weight !== 0 : conns.active + conns.inactive > 0;
      if (vs.protocol !== 'TCP' || !busy) {
        lines.push({ text: `-d ${serviceSpec(vs)} -r ${hostPort(c.ip, c.port)}`, owner: vs.owner });
        if (vs.protocol === 'TCP') drained.push(id);
        continue;
      }
      terminating.add(id);
      if (c.weight !== 0) lines.push({ text: realServerLine(vs, { ip: c.ip, port: c.port, weight: 0 }, '-e'), owner: vs.owner });
    }
  }

  return {
    ipvsadm: lines,
    ipset: planIpsets(model.ipsets, kernel.ipsets),
    addAddresses: model.addresses.filter((a) => !(kernel.addresses ?? []).includes(a)),
    removeAddresses: (kernel.addresses ?? []).filter((a) => !model.addresses.includes(a)),
    terminating,
    drained,
  };
}

/** `ipset -exist restore` lines: create missing sets, add missing entries, delete extra ones. */
export function planIpsets(sets: readonly IpsetModel[], kernel: KernelState['ipsets']): string[] {
  const out: string[] = [];
  for (const s of sets) {
    const cur = kernel.get(s.name);
    if (!cur) {
      out.push(ipsetCreateLine(s));
      for (const e of s.entries) out.push(`add ${s.name} ${e}`);
      continue;
    }
    const curEntries = new Set(cur.entries);
    const want = new Set(s.entries);
    for (const e of cur.entries) if (!want.has(e)) out.push(`del ${s.name} ${e}`);
    for (const e of s.entries) if (!curEntries.has(e)) out.push(`add ${s.name} ${e}`);
  }
  return out;
}
