/**
 * `kproxy trace`: reads a ruleset (files given with --from: `iptables-save` dumps,
 * `iptables-restore` inputs such as `--dry-run` output, or `nft -j list ruleset` JSON, told apart
 * by content; or, without --from, both `iptables-save` and `nft -j list ruleset` of the current
 * namespace) and prints what the datapath does with the first packet of a connection.
 * Exit status: 0 traced, 1 the ruleset could not be read, 2 bad arguments (one line).
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { errorMessage } from '../core/errors.js';
import { localAddresses } from '../platform/addresses.js';
import type { Exec } from '../platform/exec.js';
import { IptablesEvaluator, parseIpsetSave } from './iptables-eval.js';
import { parseIpvsadmConnections, parseIpvsadmSave, type ParsedVirtualServer } from '../backends/ipvs/kernel-state.js';
import { DRY_RUN_SECTIONS } from '../backends/ipvs/serialize.js';
import { IpvsEvaluator } from './ipvs-eval.js';
import { parseIptablesSave, type Ruleset } from './iptables-save.js';
import { withKubeProxyJumps } from './kube-jumps.js';
import { NftablesEvaluator } from './nft-eval.js';
import { looksLikeNftJson, mergeNftRulesets, parseNftJson, withoutTables, type NftRuleset } from './nft-ruleset.js';
import { formatTrace, ipFamilyOf, tracePacket, type NodeContext, type Protocol, type RulesetEvaluator, type TracePacket } from './trace.js';

export interface TraceDeps {
  readonly exec: Exec;
  readonly stdout: (s: string) => void;
  readonly stderr: (s: string) => void;
  /** Node addresses when neither --node-ip nor --from is given (defaults to this host's). */
  readonly hostAddresses?: (family: 'IPv4' | 'IPv6') => string[];
  readonly readFile?: (path: string) => Promise<string>;
}

export const TRACE_USAGE = `usage: kproxy trace --src IP [--sport N] --dst IP --dport N [--protocol tcp|udp|sctp]
                    [--from FILE ...] [--ipsets FILE] [--node-ip IP ...] [--in-interface NAME]
                    [--local] [--json]
Walks the first packet of a new connection through the netfilter hooks and the installed rules.
  --from FILE        iptables-save dump or iptables-restore input (repeat to layer files, as --noflush),
                     or an nft -j list ruleset JSON file (told apart by content);
                     default: iptables-save and nft -j list ruleset of the current network namespace
  --ipsets FILE      ipset save output, for -m set rules (IPVS mode)
  --ipvs FILE        ipvsadm -Sn (virtual servers) or ipvsadm -Ln (with connection counters) output;
                     a kproxy --dry-run file of IPVS mode given to --from holds all three texts
  --node-ip IP       an address of this node (repeatable; 127.0.0.0/8 is always local)
  --local            the packet is generated on this node (default: it arrives from outside)
  --json             print the result as JSON
`;

class UsageError extends Error {}

function port(v: string, flag: string): number {
  if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError(`invalid value ${JSON.stringify(v)} for ${flag}: must be a port 1-65535`);
  return Number(v);
}

function ip(v: string | undefined, flag: string): string {
  if (v === undefined) throw new UsageError(`missing required flag ${flag}`);
  if (ipFamilyOf(v) === undefined) throw new UsageError(`invalid value ${JSON.stringify(v)} for ${flag}: must be an IP address`);
  return v;
}

export async function traceCommand(argv: string[], deps: TraceDeps): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: false, strict: true,
      options: {
        src: { type: 'string' }, sport: { type: 'string' }, dst: { type: 'string' }, dport: { type: 'string' },
        protocol: { type: 'string' }, from: { type: 'string', multiple: true }, ipsets: { type: 'string' }, ipvs: { type: 'string', multiple: true },
        'node-ip': { type: 'string', multiple: true }, 'in-interface': { type: 'string' },
        local: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    const msg = errorMessage(e);
    const flag = /'(-[^']*)'/.exec(msg)?.[1];
    const code = e instanceof Error && 'code' in e ? String(e.code) : '';
    const reason = code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? `unknown flag ${flag ?? ''}`
      : code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ? `flag ${(/--?[a-z-]+/.exec(msg)?.[0]) ?? ''} needs a value`
        : code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' ? `unexpected argument ${(/'([^']*)'/.exec(msg)?.[1]) ?? ''}` : msg.split('\n')[0] ?? msg;
    deps.stderr(`kproxy trace: ${reason}\n`);
    return 2;
  }
  const v = parsed.values;
  if (v.help === true) { deps.stdout(TRACE_USAGE); return 0; }
  let packet: TracePacket;
  let nodeIPs: string[];
  try {
    const src = ip(v.src, '--src');
    const dst = ip(v.dst, '--dst');
    if (ipFamilyOf(src) !== ipFamilyOf(dst)) throw new UsageError('--src and --dst must be of the same IP family');
    if (v.dport === undefined) throw new UsageError('missing required flag --dport');
    const protocol = v.protocol ?? 'tcp';
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') throw new UsageError(`invalid value ${JSON.stringify(protocol)} for --protocol: must be tcp, udp or sctp`);
    nodeIPs = (v['node-ip'] ?? []).map((x) => ip(x, '--node-ip'));
    packet = {
      src, dst, dport: port(v.dport, '--dport'), protocol: protocol satisfies Protocol,
      ...(v.sport !== undefined ? { srcPort: port(v.sport, '--sport') } : {}),
      ...(v['in-interface'] !== undefined ? { inInterface: v['in-interface'] } : {}),
      origin: v.local === true ? 'local' : 'external',
    };
  } catch (e) {
    if (e instanceof UsageError) { deps.stderr(`kproxy trace: ${e.message}\n`); return 2; }
    throw e;
  }
  const v6 = ipFamilyOf(packet.dst) === 'ipv6';
  const notes: string[] = [];
  let rs: Ruleset | undefined;
  let nft: NftRuleset | undefined;
  const read = deps.readFile ?? ((p: string) => readFile(p, 'utf8'));
  const ipvs = { servers: [] as ParsedVirtualServer[], connections: new Map<string, { active: number; inactive: number }>(), ipsetText: '' };
  const addIpvs = (text: string): void => {
    if (/^IP Virtual Server version/m.test(text)) {
      for (const [k, c] of parseIpvsadmConnections(text)) ipvs.connections.set(k, c);
      if (ipvs.servers.length === 0) ipvs.servers.push(...parseIpvsadmList(text));
    } else ipvs.servers.splice(0, ipvs.servers.length, ...parseIpvsadmSave(text));
  };
  try {
    for (const f of v.ipvs ?? []) addIpvs(await read(f));
    if (v.from !== undefined) {
      for (const f of v.from) {
        const text = await read(f);
        if (looksLikeNftJson(text)) nft = mergeNftRulesets(nft, parseNftJson(text));
        else if (text.includes(`${DRY_RUN_SECTIONS.ipvsadm}\n`)) {
          // kproxy --dry-run in IPVS mode: the three texts, each after its header.
          const part = (h: string): string => sectionOf(text, h);
          addIpvs(part(DRY_RUN_SECTIONS.ipvsadm));
          ipvs.ipsetText += part(DRY_RUN_SECTIONS.ipset) + '\n';
          rs = parseIptablesSave(part(DRY_RUN_SECTIONS.iptables), rs);
        } else if (/^-A (-t|-u|--sctp-service|-f) /m.test(text)) addIpvs(text);
        else rs = parseIptablesSave(text, rs);
      }
    } else {
      // IPVS state of this namespace, when there is any.
      const save = await deps.exec('ipvsadm', ['-Sn']);
      if (save.code === 0 && save.stdout.trim() !== '' && (v.ipvs ?? []).length === 0) {
        addIpvs(save.stdout);
        const list = await deps.exec('ipvsadm', ['-Ln']);
        if (list.code === 0) addIpvs(list.stdout);
        if (v.ipsets === undefined) {
          const sets = await deps.exec('ipset', ['save']);
          if (sets.code === 0) ipvs.ipsetText = sets.stdout;
        }
      }
      const tool = v6 ? 'ip6tables-save' : 'iptables-save';
      const r = await deps.exec(tool, []);
      const n = await deps.exec('nft', ['-j', 'list', 'ruleset']);
      const failure = (t: string, x: { code: number; stderr: string }): string => `${t} failed (exit ${x.code}): ${x.stderr.trim().split('\n')[0] ?? ''}`;
      if (r.code !== 0 && n.code !== 0) {
        deps.stderr(`kproxy trace: ${failure(tool, r)}\nkproxy trace: ${failure('nft -j list ruleset', n)}\n`);
        return 1;
      }
      if (r.code === 0) rs = parseIptablesSave(r.stdout);
      else notes.push(`${failure(tool, r)}: tracing nftables only`);
      if (n.code === 0 && n.stdout.trim() !== '') {
        try {
          nft = parseNftJson(n.stdout);
        } catch (e) {
          if (!rs) throw e;
          notes.push(`nft -j list ruleset gave no usable JSON (${errorMessage(e)}): tracing iptables only`);
        }
      } else if (n.code !== 0) notes.push(`${failure('nft -j list ruleset', n)}: tracing iptables only`);
      // With iptables-nft, the iptables tables show up in both dumps: evaluate them once.
      if (rs && nft) {
        const iptTables = rs.tables;
        const fam = v6 ? 'ip6' : 'ip';
        const dup = [...nft.tables.values()].filter((t) => t.family === fam && iptTables.has(t.name)).map((t) => `${t.family} ${t.name}`);
        if (dup.length > 0) {
          nft = withoutTables(nft, dup);
          notes.push(`nft tables ${dup.join(', ')} are ${tool}'s (iptables-nft): traced once, as iptables`);
        }
      }
      if (nodeIPs.length === 0) {
        nodeIPs = (deps.hostAddresses ?? localAddresses)(v6 ? 'IPv6' : 'IPv4');
        notes.push('node addresses taken from this host\'s interfaces');
      }
    }
  } catch (e) {
    deps.stderr(`kproxy trace: cannot read the ruleset: ${errorMessage(e)}\n`);
    return 1;
  }
  if (!rs && !nft && ipvs.servers.length === 0) return 1;
  const evaluators: RulesetEvaluator[] = [];
  if (rs) {
    const j = withKubeProxyJumps(rs);
    if (j.note !== undefined) notes.push(j.note);
    evaluators.push(new IptablesEvaluator(j.ruleset));
  }
  if (ipvs.servers.length > 0) evaluators.push(new IpvsEvaluator(ipvs));
  if (nft) {
    for (const sk of nft.skipped) notes.push(`nft dump: skipped ${sk}`);
    // A dump of the live namespace holds the affinity sets' current contents.
    evaluators.push(new NftablesEvaluator(nft, v6 ? 'ipv6' : 'ipv4', { affinity: v.from === undefined ? 'dump' : 'fork' }));
  }
  let ipsets: NodeContext['ipsets'];
  if (v.ipsets !== undefined) {
    try { ipsets = parseIpsetSave(await read(v.ipsets)); } catch (e) { deps.stderr(`kproxy trace: cannot read ${v.ipsets}: ${errorMessage(e)}\n`); return 1; }
  } else if (ipvs.ipsetText !== '') ipsets = parseIpsetSave(ipvs.ipsetText);
  // Addresses on kube-ipvs0 (KUBE-IPVS-IPS) are local: IPVS sees packets the kernel delivers locally.
  const bound = [...(ipsets?.entries() ?? [])].find(([name]) => name === 'KUBE-IPVS-IPS' || name === 'KUBE-6-IPVS-IPS')?.[1].entries ?? [];
  const added = bound.filter((a) => !nodeIPs.includes(a));
  if (added.length > 0) {
    nodeIPs.push(...added);
    notes.push(`kube-ipvs0 addresses (KUBE-IPVS-IPS) counted as local: ${added.join(', ')}`);
  }
  if (packet.origin === 'local' && !nodeIPs.includes(packet.src) && !packet.src.startsWith('127.')) {
    nodeIPs.push(packet.src);
    notes.push(`--local: ${packet.src} counted as a node address`);
  }
  if (nodeIPs.length === 0) notes.push('no --node-ip given: only 127.0.0.0/8 counts as local');
  const node: NodeContext = { localAddresses: nodeIPs, ...(ipsets ? { ipsets } : {}) };
  const result = tracePacket(packet, node, evaluators, notes);
  deps.stdout(v.json === true ? JSON.stringify(result, null, 2) + '\n' : formatTrace(result));
  return 0;
}

/** The lines after `header` up to the next `# ` header line of a --dry-run file. */
function sectionOf(text: string, header: string): string {
  const lines = text.split('\n');
  const start = lines.indexOf(header);
  if (start < 0) return '';
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if ((Object.values(DRY_RUN_SECTIONS) as string[]).includes(l)) break;
    out.push(l);
  }
  return out.join('\n') + '\n';
}

/** Virtual servers from `ipvsadm -Ln` alone (scheduler, persistence, weights; forwarding Masq). */
function parseIpvsadmList(text: string): ParsedVirtualServer[] {
  const out: { protocol: 'TCP' | 'UDP' | 'SCTP'; ip: string; port: number; scheduler: string; persistence: number; flags: string[]; realServers: { ip: string; port: number; weight: number; forwarding: 'masq' | 'gate' | 'ipip' }[] }[] = [];
  const hp = (t: string): { ip: string; port: number } | undefined => {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(t);
    return m ? { ip: m[1] ?? m[2] ?? '', port: Number(m[3]) } : undefined;
  };
  for (const line of text.split('\n')) {
    const s = /^(TCP|UDP|SCTP)\s+(\S+)\s+(\S+)(?:.*persistent (\d+))?/.exec(line);
    if (s) {
      const a = hp(s[2] ?? '');
      if (a) out.push({ protocol: (s[1] ?? 'TCP') as 'TCP', ...a, scheduler: s[3] ?? '', persistence: Number(s[4] ?? 0), flags: [], realServers: [] });
      continue;
    }
    const r = /^\s+->\s+(\S+)\s+(\S+)\s+(\d+)/.exec(line);
    const a = r ? hp(r[1] ?? '') : undefined;
    const vs = out[out.length - 1];
    if (r && a && vs) vs.realServers.push({ ...a, weight: Number(r[3]), forwarding: r[2] === 'Masq' ? 'masq' : r[2] === 'Tunnel' ? 'ipip' : 'gate' });
  }
  return out;
}
