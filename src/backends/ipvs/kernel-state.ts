/**
 * Reading IPVS mode's kernel state back from the tools' own output: `ipvsadm -Sn` (virtual and
 * real servers, in the format ipvsadm-restore takes), `ipvsadm -Ln` (connection counters per real
 * server), `ip -o addr show dev kube-ipvs0`. `ipset save` is read by the tracer's parser. Pure.
 */
import { canonicalIP } from '../../core/ip.js';
import type { Protocol } from '../../core/objects.js';
import { hostPort, virtualServerKey, type RealServer, type VirtualServer } from './model.js';

export { parseIpsetSave } from '../../netfilter/iptables-eval.js';

/** "198.18.0.10:80" / "[fd00::1]:80" → ip and port; undefined when malformed. */
export function splitHostPort(text: string): { ip: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const raw = m?.[1] ?? m?.[2];
  const c = raw === undefined ? undefined : canonicalIP(raw);
  if (!m || !c) return undefined;
  const port = Number(m[3]);
  return port >= 0 && port <= 65535 ? { ip: c.ip, port } : undefined;
}

const PROTO_FLAGS: Readonly<Record<string, Protocol>> = {
  '-t': 'TCP', '--tcp-service': 'TCP', '-u': 'UDP', '--udp-service': 'UDP', '--sctp-service': 'SCTP',
};

interface MutableVS {
  protocol: Protocol;
  ip: string;
  port: number;
  scheduler: string;
  persistence: number;
  flags: string[];
  realServers: RealServer[];
}

/** A real server line's forwarding method, as -Sn writes it. kproxy only ever programs -m. */
export type Forwarding = 'masq' | 'gate' | 'ipip';

export interface ParsedRealServer extends RealServer {
  readonly forwarding: Forwarding;
}

export interface ParsedVirtualServer extends VirtualServer {
  readonly realServers: readonly ParsedRealServer[];
}

/**
 * Parses `ipvsadm -Sn` (also `ipvsadm-restore` input): `-A -t VIP:PORT -s rr [-b flags] [-p T]`
 * and `-a -t VIP:PORT -r RIP:RPORT -m -w W`. Firewall-mark services (`-f`) are not kproxy's and
 * are left out. Throws on a line it cannot read (so a changed format never silently reads as
 * "nothing installed").
 */
export function parseIpvsadmSave(text: string): ParsedVirtualServer[] {
  const servers = new Map<string, MutableVS & { realServers: ParsedRealServer[] }>();
  const lines = text.split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const t = line.split(/\s+/);
    const verb = t[0];
    if (verb !== '-A' && verb !== '-a') throw new Error(`ipvsadm -Sn line ${i + 1}: unexpected ${JSON.stringify(line)}`);
    let protocol: Protocol | undefined;
    let addr: { ip: string; port: number } | undefined;
    let fwmark = false;
    const vs: MutableVS = { protocol: 'TCP', ip: '', port: 0, scheduler: 'wlc', persistence: 0, flags: [], realServers: [] };
    let rs: { ip: string; port: number } | undefined;
    let weight = 1;
    let forwarding: Forwarding = 'gate';
    for (let k = 1; k < t.length; k++) {
      const a = t[k] ?? '';
      const next = (): string => {
        const v = t[++k];
        if (v === undefined) throw new Error(`ipvsadm -Sn line ${i + 1}: ${a} needs a value`);
        return v;
      };
      const proto = PROTO_FLAGS[a];
      if (proto !== undefined) {
        protocol = proto;
        addr = splitHostPort(next());
        if (!addr) throw new Error(`ipvsadm -Sn line ${i + 1}: bad service address in ${JSON.stringify(line)}`);
      } else if (a === '-f' || a === '--fwmark-service') {
        fwmark = true;
        next();
      } else if (a === '-s' || a === '--scheduler') vs.scheduler = next();
      else if (a === '-p' || a === '--persistent') vs.persistence = Number(next());
      else if (a === '-b' || a === '--sched-flags') vs.flags = next().split(',').filter((f) => f !== '');
      else if (a === '-M' || a === '--netmask' || a === '--pe') next();
      else if (a === '-r' || a === '--real-server') {
        rs = splitHostPort(next());
        if (!rs) throw new Error(`ipvsadm -Sn line ${i + 1}: bad real server in ${JSON.stringify(line)}`);
      } else if (a === '-w' || a === '--weight') weight = Number(next());
      else if (a === '-m' || a === '--masquerading') forwarding = 'masq';
      else if (a === '-g' || a === '--gatewaying') forwarding = 'gate';
      else if (a === '-i' || a === '--ipip') forwarding = 'ipip';
      else if (a === '-x' || a === '-y' || a === '--u-threshold' || a === '--l-threshold' || a === '--tun-type' || a === '--tun-port') next();
    }
    if (fwmark) continue;
    if (!protocol || !addr) throw new Error(`ipvsadm -Sn line ${i + 1}: no service in ${JSON.stringify(line)}`);
    const key = virtualServerKey({ protocol, ...addr });
    if (verb === '-A') {
      servers.set(key, { ...vs, protocol, ip: addr.ip, port: addr.port, realServers: [] });
    } else {
      const owner = servers.get(key);
      if (!owner || !rs) throw new Error(`ipvsadm -Sn line ${i + 1}: real server of an unknown service in ${JSON.stringify(line)}`);
      owner.realServers.push({ ip: rs.ip, port: rs.port, weight, forwarding });
    }
  }
  return [...servers.values()];
}

/** The identity of one real server of one virtual server: "TCP:198.18.0.10:80/198.18.1.2:80". */
export function realServerId(vs: { readonly protocol: string; readonly ip: string; readonly port: number }, rs: { readonly ip: string; readonly port: number }): string {
  return `${virtualServerKey(vs)}/${hostPort(rs.ip, rs.port)}`;
}

/**
 * Parses `ipvsadm -Ln` into ActiveConn + InActConn per real server (keyed by realServerId):
 *   TCP  198.18.0.10:80 rr
 *     -> 198.18.1.2:80                Masq    1      3          1
 */
export function parseIpvsadmConnections(text: string): Map<string, { active: number; inactive: number }> {
  const out = new Map<string, { active: number; inactive: number }>();
  let vs: { protocol: string; ip: string; port: number } | undefined;
  for (const line of text.split('\n')) {
    const svc = /^(TCP|UDP|SCTP)\s+(\S+)\s/.exec(line + ' ');
    if (svc) {
      const a = splitHostPort(svc[2] ?? '');
      vs = a ? { protocol: svc[1] ?? 'TCP', ...a } : undefined;
      continue;
    }
    if (/^FWM\s/.test(line)) {
      vs = undefined;
      continue;
    }
    const rs = /^\s+->\s+(\S+)\s+\S+\s+\d+\s+(\d+)\s+(\d+)/.exec(line);
    if (rs && vs) {
      const a = splitHostPort(rs[1] ?? '');
      if (a) out.set(realServerId(vs, a), { active: Number(rs[2]), inactive: Number(rs[3]) });
    }
  }
  return out;
}

/** Addresses in `ip -o addr show dev kube-ipvs0` output. */
export function parseDeviceAddresses(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\binet6?\s+([0-9a-fA-F.:]+)\/\d+/g)) {
    const c = canonicalIP(m[1] ?? '');
    if (c) out.push(c.ip);
  }
  return out;
}
