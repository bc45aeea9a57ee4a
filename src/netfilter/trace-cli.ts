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
        protocol: { type: 'string' }, from: { type: 'string', multiple: true }, ipsets: { type: 'string' },
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
  try {
    if (v.from !== undefined) {
      for (const f of v.from) {
        const text = await read(f);
        if (looksLikeNftJson(text)) nft = mergeNftRulesets(nft, parseNftJson(text));
        else rs = parseIptablesSave(text, rs);
      }
    } else {
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
  if (!rs && !nft) return 1;
  const evaluators: RulesetEvaluator[] = [];
  if (rs) {
    const j = withKubeProxyJumps(rs);
    if (j.note !== undefined) notes.push(j.note);
    evaluators.push(new IptablesEvaluator(j.ruleset));
  }
  if (nft) {
    for (const sk of nft.skipped) notes.push(`nft dump: skipped ${sk}`);
    // A dump of the live namespace holds the affinity sets' current contents.
    evaluators.push(new NftablesEvaluator(nft, v6 ? 'ipv6' : 'ipv4', { affinity: v.from === undefined ? 'dump' : 'fork' }));
  }
  let ipsets: NodeContext['ipsets'];
  if (v.ipsets !== undefined) {
    try { ipsets = parseIpsetSave(await read(v.ipsets)); } catch (e) { deps.stderr(`kproxy trace: cannot read ${v.ipsets}: ${errorMessage(e)}\n`); return 1; }
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
