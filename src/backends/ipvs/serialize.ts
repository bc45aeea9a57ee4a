/**
 * IPVS mode's texts: `ipvsadm-restore` input (the `ipvsadm -Sn` format), `ipset restore` input
 * (the `ipset save` format) and, through the iptables serializer, `iptables-restore` input.
 * Deterministic and pure.
 */
import { serializeFull } from '../iptables/serialize.js';
import type { IpsetModel, IpvsModel, RealServer, VirtualServer } from './model.js';
import { hostPort } from './model.js';
import { DUMMY_DEVICE } from './names.js';

export function protocolFlag(protocol: string): string {
  return protocol === 'UDP' ? '-u' : protocol === 'SCTP' ? '--sctp-service' : '-t';
}

/** `-t 198.18.0.10:80` */
export function serviceSpec(vs: { readonly protocol: string; readonly ip: string; readonly port: number }): string {
  return `${protocolFlag(vs.protocol)} ${hostPort(vs.ip, vs.port)}`;
}

/** The rest of an `-A`/`-E` line after the service: scheduler, flags, persistence. */
export function serviceOptions(vs: VirtualServer): string {
  let s = `-s ${vs.scheduler}`;
  if (vs.flags.length > 0) s += ` -b ${vs.flags.join(',')}`;
  if (vs.persistence > 0) s += ` -p ${vs.persistence}`;
  return s;
}

export function addServiceLine(vs: VirtualServer, verb: '-A' | '-E' = '-A'): string {
  return `${verb} ${serviceSpec(vs)} ${serviceOptions(vs)}`;
}

/** Masquerade forwarding (`-m`), as every upstream real server. */
export function realServerLine(vs: VirtualServer, rs: RealServer, verb: '-a' | '-e' = '-a'): string {
  return `${verb} ${serviceSpec(vs)} -r ${hostPort(rs.ip, rs.port)} -m -w ${rs.weight}`;
}

/** Every virtual server and real server (what a kernel without any of them needs). */
export function serializeIpvsadm(servers: readonly VirtualServer[]): string {
  const out: string[] = [];
  for (const vs of servers) {
    out.push(addServiceLine(vs));
    for (const rs of vs.realServers) out.push(realServerLine(vs, rs));
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

export function ipsetCreateLine(s: IpsetModel): string {
  return `create ${s.name} ${s.type} ${s.options}`;
}

/** Every set and entry (for `ipset -exist restore`). */
export function serializeIpsets(sets: readonly IpsetModel[]): string {
  const out: string[] = [];
  for (const s of sets) {
    out.push(ipsetCreateLine(s));
    for (const e of s.entries) out.push(`add ${s.name} ${e}`);
  }
  return out.join('\n') + '\n';
}

export const DRY_RUN_SECTIONS = {
  ipvsadm: '# ipvsadm-restore',
  ipset: '# ipset -exist restore',
  iptables: '# iptables-restore --noflush',
} as const;

/**
 * `--dry-run`: the three texts a full sync applies, each after a `#` header line, and the
 * kube-ipvs0 addresses as a comment. `kproxy trace --from` reads this file back.
 */
export function serializeDryRun(model: IpvsModel): string {
  return [
    `# ${DUMMY_DEVICE} addresses: ${model.addresses.join(' ') || '(none)'}`,
    DRY_RUN_SECTIONS.ipvsadm,
    serializeIpvsadm(model.virtualServers).trimEnd(),
    DRY_RUN_SECTIONS.ipset,
    serializeIpsets(model.ipsets).trimEnd(),
    DRY_RUN_SECTIONS.iptables,
    serializeFull(model.iptables).text.trimEnd(),
    '',
  ].join('\n');
}
