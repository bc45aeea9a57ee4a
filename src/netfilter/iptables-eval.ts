/**
 * The iptables evaluator for the tracer: runs a table's built-in chain for a hook, in rule
 * order, following jumps, gotos, RETURN and policies, and applying targets with the kernel's
 * semantics (DNAT/SNAT/MASQUERADE/REDIRECT end the nat table's walk; MARK and LOG continue;
 * ACCEPT ends the table; DROP and REJECT end the packet). Undecidable or unknown matches make
 * the rule count as not matching, with a warning.
 */
import { parseCIDR } from '../core/ip.js';
import type { Match, Rule, Ruleset, Target } from './iptables-save.js';
import type { EvalContext, Hook, PacketState, RuleRef, RulesetEvaluator, Stage, StageOutcome } from './trace.js';

const TABLE_STAGES: readonly { table: string; hook: Hook; priority: number; nat?: 'dst' | 'src' }[] = [
  { table: 'raw', hook: 'PREROUTING', priority: -300 },
  { table: 'mangle', hook: 'PREROUTING', priority: -150 },
  { table: 'nat', hook: 'PREROUTING', priority: -100, nat: 'dst' },
  { table: 'mangle', hook: 'INPUT', priority: -150 },
  { table: 'filter', hook: 'INPUT', priority: 0 },
  { table: 'security', hook: 'INPUT', priority: 50 },
  { table: 'nat', hook: 'INPUT', priority: 100, nat: 'src' },
  { table: 'mangle', hook: 'FORWARD', priority: -150 },
  { table: 'filter', hook: 'FORWARD', priority: 0 },
  { table: 'security', hook: 'FORWARD', priority: 50 },
  { table: 'raw', hook: 'OUTPUT', priority: -300 },
  { table: 'mangle', hook: 'OUTPUT', priority: -150 },
  { table: 'nat', hook: 'OUTPUT', priority: -100, nat: 'dst' },
  { table: 'filter', hook: 'OUTPUT', priority: 0 },
  { table: 'security', hook: 'OUTPUT', priority: 50 },
  { table: 'mangle', hook: 'POSTROUTING', priority: -150 },
  { table: 'nat', hook: 'POSTROUTING', priority: 100, nat: 'src' },
];

const MAX_DEPTH = 64;

type Tri = true | false | { unknown: string };

const hex = (n: number): string => '0x' + (n >>> 0).toString(16);

function ifaceMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function addrMatches(spec: string, ip: string): boolean {
  return spec.split(',').some((s) => {
    const c = parseCIDR(s.includes('/') ? s : `${s}/${s.includes(':') ? 128 : 32}`);
    return c?.contains(ip) === true;
  });
}

const neg = (v: boolean, negated: boolean): boolean => (negated ? !v : v);

export class IptablesEvaluator implements RulesetEvaluator {
  readonly name: string;
  /** A side effect of the rule being applied (recent --set), shown after it. */
  private pendingNote: string | undefined;

  constructor(private readonly rs: Ruleset, name = 'iptables') {
    this.name = name;
  }

  stages(): readonly Stage[] {
    return TABLE_STAGES.filter((s) => this.rs.tables.has(s.table)).map((s) => ({
      hook: s.hook, priority: s.priority, label: s.table, ...(s.nat !== undefined ? { nat: s.nat } : {}),
    }));
  }

  evaluate(stage: Stage, p: PacketState, ctx: EvalContext): StageOutcome {
    const table = this.rs.tables.get(stage.label);
    const chain = table?.chains.get(stage.hook);
    if (!table || !chain) return { kind: 'accept' };
    const r = this.walk(table.name, chain.name, stage.hook, p, ctx, 0);
    if (r.kind !== 'done') {
      const policy = chain.policy ?? 'ACCEPT';
      ctx.emit({ kind: 'policy', table: table.name, chain: chain.name, policy, depth: 0 });
      return policy === 'DROP' ? { kind: 'drop' } : { kind: 'accept' };
    }
    return r.outcome;
  }

  /** Walks a chain; 'return' and 'fallthrough' go back to the caller. */
  private walk(table: string, chainName: string, hook: Hook, p: PacketState, ctx: EvalContext, depth: number):
    { kind: 'return' | 'fallthrough' } | { kind: 'done'; outcome: StageOutcome } {
    const chain = this.rs.tables.get(table)?.chains.get(chainName);
    if (!chain) {
      ctx.warn(`chain ${table}/${chainName} does not exist: treated as empty`, depth);
      return { kind: 'fallthrough' };
    }
    if (depth > MAX_DEPTH) {
      ctx.warn(`jumps nested deeper than ${MAX_DEPTH} at ${chainName}: stopped (a loop?)`, depth);
      return { kind: 'done', outcome: { kind: 'drop' } };
    }
    for (let i = 0; i < chain.rules.length; i++) {
      const rule = chain.rules[i];
      if (!rule) continue;
      const ref: RuleRef = { table, chain: chainName, index: i + 1, text: rule.text };
      if (!this.matches(rule, ref, hook, p, ctx, depth)) continue;
      const t = rule.target;
      const out = this.apply(t, ref, hook, p, ctx, depth);
      if (out === 'continue') continue;
      if (out === 'return') {
        ctx.emit({ kind: 'return', table, chain: chainName, depth, how: 'RETURN' });
        return { kind: 'return' };
      }
      return out;
    }
    if (!chain.builtin) ctx.emit({ kind: 'return', table, chain: chainName, depth, how: 'end of chain' });
    return { kind: 'fallthrough' };
  }

  private apply(t: Target | undefined, ref: RuleRef, hook: Hook, p: PacketState, ctx: EvalContext, depth: number):
    'continue' | 'return' | { kind: 'return' | 'fallthrough' } | { kind: 'done'; outcome: StageOutcome } {
    const rule = (effect?: string): void => {
      ctx.emit({ kind: 'rule', ...ref, depth, ...(effect !== undefined ? { effect } : {}) });
      if (this.pendingNote !== undefined) ctx.emit({ kind: 'note', text: this.pendingNote, depth: depth + 1 });
      this.pendingNote = undefined;
    };
    if (t === undefined) { rule('no target: counted, next rule'); return 'continue'; }
    switch (t.kind) {
      case 'jump': {
        rule();
        const r = this.walk(ref.table, t.chain, hook, p, ctx, depth + 1);
        if (r.kind === 'done') return r;
        // A goto returns to the caller of this chain.
        return t.goto ? { kind: 'return' } : 'continue';
      }
      case 'ACCEPT': rule('ACCEPT: this table is done with the packet'); return { kind: 'done', outcome: { kind: 'accept' } };
      case 'DROP': rule('DROP'); return { kind: 'done', outcome: { kind: 'drop' } };
      case 'REJECT': rule(`REJECT --reject-with ${t.rejectWith}`); return { kind: 'done', outcome: { kind: 'reject', with: t.rejectWith } };
      case 'RETURN': rule(); return 'return';
      case 'MARK': {
        const before = p.mark;
        p.mark = (((p.mark & ~t.mask) >>> 0) ^ t.value) >>> 0;
        rule(`mark ${hex(before)} -> ${hex(p.mark)}`);
        return 'continue';
      }
      case 'LOG': rule(`logged${t.prefix !== undefined ? ` with prefix ${JSON.stringify(t.prefix)}` : ''}`); return 'continue';
      case 'NOTRACK':
        if (p.ct === undefined) p.ct = { state: 'UNTRACKED', dnat: false, snat: false, origSrc: p.src, origDst: p.dst, origSport: p.srcPort, origDport: p.dport };
        rule('not tracked by conntrack: no NAT for this packet');
        return 'continue';
      case 'DNAT': case 'REDIRECT': {
        if (ref.table !== 'nat') { rule(`${t.kind} outside the nat table: ignored`); return 'continue'; }
        const from = `${p.dst}:${p.dport}`;
        let ip = p.dst;
        let port: number | undefined;
        if (t.kind === 'DNAT') {
          if (t.to?.ip === undefined) { rule('DNAT without an address: ignored'); return 'continue'; }
          ip = t.to.ip; port = t.to.port;
          if (t.to.ipRange || (t.to.portTo !== undefined && t.to.portTo !== t.to.port)) ctx.warn('DNAT to a range: the kernel picks within it; the trace shows its first address and port', depth);
        } else if (t.kind === 'REDIRECT') {
          ip = hook === 'OUTPUT' ? (p.family === 'ipv6' ? '::1' : '127.0.0.1') : (ctx.node.localAddresses[0] ?? '127.0.0.1');
          port = t.toPort;
          if (hook !== 'OUTPUT') ctx.warn(`REDIRECT goes to the primary address of the incoming interface; the trace uses ${ip}`, depth);
        }
        ctx.setDnat(ip, port, ref);
        rule(`${t.kind}: destination ${from} -> ${p.dst}:${p.dport}`);
        return { kind: 'done', outcome: { kind: 'accept' } };
      }
      case 'SNAT': case 'MASQUERADE': {
        if (ref.table !== 'nat') { rule(`${t.kind} outside the nat table: ignored`); return 'continue'; }
        if (t.kind === 'SNAT') {
          ctx.setSnat('SNAT', t.to?.ip, false, ref);
          rule(`SNAT: source ${p.src} (was ${p.ct?.origSrc ?? '?'})`);
        } else if (t.kind === 'MASQUERADE') {
          ctx.setSnat('MASQUERADE', undefined, t.randomFully, ref);
          rule(`MASQUERADE: source becomes the outgoing interface's address${t.randomFully ? ' (source port fully randomized)' : ''}`);
        }
        return { kind: 'done', outcome: { kind: 'accept' } };
      }
      case 'unknown':
        rule();
        ctx.warn(`unknown target ${t.name} (${t.reason}): assumed to continue with the next rule`, depth);
        return 'continue';
    }
  }

  private matches(rule: Rule, ref: RuleRef, hook: Hook, p: PacketState, ctx: EvalContext, depth: number): boolean {
    const results: Tri[] = [];
    const push = (t: Tri): void => { results.push(t); };
    if (rule.src) push(neg(addrMatches(rule.src.value, p.src), rule.src.negated));
    if (rule.dst) push(neg(addrMatches(rule.dst.value, p.dst), rule.dst.negated));
    if (rule.protocol) {
      const v = rule.protocol.value;
      const num: Record<string, string> = { '6': 'tcp', '17': 'udp', '132': 'sctp' };
      push(neg(v === 'all' || v === '0' || v === p.protocol || num[v] === p.protocol, rule.protocol.negated));
    }
    if (rule.inInterface) {
      if (hook === 'OUTPUT' || hook === 'POSTROUTING') push(neg(false, rule.inInterface.negated));
      else if (p.inInterface === undefined) push({ unknown: `-i ${rule.inInterface.value}: incoming interface not given` });
      else push(neg(ifaceMatches(rule.inInterface.value, p.inInterface), rule.inInterface.negated));
    }
    if (rule.outInterface) {
      if (hook === 'PREROUTING' || hook === 'INPUT') push(neg(false, rule.outInterface.negated));
      else if (p.outInterface === undefined) push({ unknown: `-o ${rule.outInterface.value}: outgoing interface not known` });
      else push(neg(ifaceMatches(rule.outInterface.value, p.outInterface), rule.outInterface.negated));
    }
    if (rule.fragment) push(neg(false, rule.fragment.negated));
    // Deterministic matches first; forking ones (statistic, recent lookups) only if all else matches.
    const forking: Match[] = [];
    for (const m of rule.matches) {
      if (m.kind === 'statistic' || (m.kind === 'recent' && m.op !== 'set')) { forking.push(m); continue; }
      if (m.kind === 'recent') continue; // --set: always matches, applied below
      push(this.match(m, hook, p, ctx));
    }
    if (results.some((r) => r === false)) return false;
    const unknown = results.find((r): r is { unknown: string } => typeof r === 'object');
    if (unknown) {
      ctx.emit({ kind: 'branch', ...ref, depth, matched: false, reason: 'cannot be decided (see the note)' });
      ctx.warn(`${unknown.unknown}: assumed not matching (${ref.table}/${ref.chain} rule ${ref.index})`, depth);
      return false;
    }
    for (const m of forking) {
      if (m.kind === 'statistic') {
        const prob = m.mode === 'random' ? m.probability : 1 / Math.max(1, m.every);
        if (m.mode === 'nth') ctx.warn('statistic --mode nth depends on a packet counter: shown as probability 1/every', depth);
        const hit = ctx.random(prob);
        const v = neg(hit, m.negated);
        const pr = hit ? prob : 1 - prob;
        if (prob > 0 && prob < 1) ctx.emit({ kind: 'branch', ...ref, depth, matched: v, reason: `random: ${hit ? 'chosen' : 'not chosen'}`, probability: pr });
        if (!v) return false;
      } else if (m.kind === 'recent') {
        const addr = m.side === 'source' ? p.src : p.dst;
        const known = ctx.node.recent?.[m.name] !== undefined;
        const seen = ctx.recentSeen(m.name, addr);
        const v = neg(seen, m.negated);
        const within = m.seconds !== undefined ? ` within the last ${m.seconds} s` : '';
        ctx.emit({
          kind: 'branch', ...ref, depth, matched: v,
          reason: seen ? `${known ? '' : 'assuming '}${addr} is in recent list ${m.name} (seen${within})` : `${known ? '' : 'assuming '}${addr} is not in recent list ${m.name}${known ? '' : ' (a client not seen before)'}`,
        });
        if (!v) return false;
      }
    }
    for (const m of rule.matches) {
      if (m.kind === 'recent' && m.op === 'set') ctx.recentSet(m.name, m.side === 'source' ? p.src : p.dst);
    }
    const sets = rule.matches.filter((m) => m.kind === 'recent' && m.op === 'set').map((m) => (m.kind === 'recent' ? m.name : ''));
    if (sets.length > 0) this.pendingNote = `records ${p.src} in recent list ${sets.join(', ')} (later connections from it stick here)`;
    return true;
  }

  private match(m: Match, hook: Hook, p: PacketState, ctx: EvalContext): Tri {
    const local = (ip: string): boolean => ctx.isLocal(ip);
    switch (m.kind) {
      case 'comment': case 'nfacct': return true;
      case 'port': {
        if (m.module !== p.protocol) return false;
        let ok = true;
        if (m.dport) ok &&= neg(p.dport >= m.dport.value.from && p.dport <= m.dport.value.to, m.dport.negated);
        if (m.sport) {
          if (p.srcPort === undefined) return ok ? { unknown: '--sport: source port not given' } : false;
          ok &&= neg(p.srcPort >= m.sport.value.from && p.srcPort <= m.sport.value.to, m.sport.negated);
        }
        // The first packet of a TCP connection is a SYN.
        if (m.syn) ok &&= neg(true, m.syn.negated);
        if (m.tcpFlags) {
          const set = new Set(['SYN']);
          const mask = m.tcpFlags.value.mask.includes('ALL') ? ['SYN', 'ACK', 'FIN', 'RST', 'URG', 'PSH'] : m.tcpFlags.value.mask;
          const comp = m.tcpFlags.value.comp.includes('ALL') ? mask : m.tcpFlags.value.comp.filter((c) => c !== 'NONE');
          ok &&= neg(mask.every((f) => set.has(f) === comp.includes(f)), m.tcpFlags.negated);
        }
        return ok;
      }
      case 'multiport': {
        if (p.srcPort === undefined && m.side === 'src') return { unknown: 'multiport --sports: source port not given' };
        const inRanges = (x: number | undefined): boolean => x !== undefined && m.ports.value.some((r) => x >= r.from && x <= r.to);
        const v = m.side === 'dst' ? inRanges(p.dport) : m.side === 'src' ? inRanges(p.srcPort) : inRanges(p.dport) || inRanges(p.srcPort);
        return neg(v, m.ports.negated);
      }
      case 'addrtype': {
        const typeOf = (ip: string): string[] => {
          if (local(ip)) return ['LOCAL'];
          if (parseCIDR('224.0.0.0/4')?.contains(ip) === true || ip.toLowerCase().startsWith('ff')) return ['MULTICAST'];
          if (ip === '255.255.255.255') return ['BROADCAST'];
          return ['UNICAST'];
        };
        if (m.limitIfaceIn || m.limitIfaceOut) ctx.warn('addrtype --limit-iface-*: the trace checks all node addresses, not just the interface\'s', 0);
        let ok = true;
        if (m.srcType) ok &&= neg(typeOf(p.src).some((t) => m.srcType?.value.includes(t) === true), m.srcType.negated);
        if (m.dstType) ok &&= neg(typeOf(p.dst).some((t) => m.dstType?.value.includes(t) === true), m.dstType.negated);
        return ok;
      }
      case 'mark': return neg(((p.mark & m.mark.value.mask) >>> 0) === m.mark.value.value, m.mark.negated);
      case 'state': return neg(this.ctStates(p).some((s) => m.states.value.includes(s)), m.states.negated);
      case 'conntrack': {
        for (const o of m.options) {
          let v: boolean | { unknown: string };
          const ct = p.ct;
          switch (o.name) {
            case '--ctstate': v = this.ctStates(p).some((s) => o.value.split(',').includes(s)); break;
            case '--ctstatus': v = o.value.split(',').includes('NONE') && ct !== undefined; break;
            case '--ctproto': v = o.value === p.protocol; break;
            case '--ctorigsrc': v = ct !== undefined && addrMatches(o.value, ct.origSrc); break;
            case '--ctorigdst': v = ct !== undefined && addrMatches(o.value, ct.origDst); break;
            case '--ctreplsrc': v = ct !== undefined && addrMatches(o.value, p.dst); break;
            case '--ctrepldst': v = ct !== undefined && addrMatches(o.value, p.src); break;
            case '--ctorigdstport': v = ct !== undefined && String(ct.origDport) === o.value; break;
            case '--ctorigsrcport': v = ct?.origSport === undefined ? { unknown: '--ctorigsrcport: source port not given' } : String(ct.origSport) === o.value; break;
            case '--ctdir': v = o.value === 'ORIGINAL'; break;
            default: v = { unknown: `conntrack ${o.name}` };
          }
          if (typeof v === 'object') return v;
          if (neg(v, o.negated) === false) return false;
        }
        return true;
      }
      case 'set': {
        const set = ctx.node.ipsets?.get(m.name);
        if (!set) return { unknown: `ipset ${m.name}: contents not given` };
        return neg(ipsetContains(set, m.flags, p), m.negated);
      }
      case 'physdev': {
        // Not a bridged packet: xt_physdev matches only if every used option is negated.
        return m.options.every((o) => o.negated);
      }
      case 'unknown': return { unknown: `unknown match ${m.module} (${m.reason})` };
      case 'statistic': case 'recent': return true;
    }
  }

  private ctStates(p: PacketState): string[] {
    if (p.ct === undefined) return ['INVALID'];
    if (p.ct.state === 'UNTRACKED') return ['UNTRACKED'];
    return ['NEW', ...(p.ct.dnat ? ['DNAT'] : []), ...(p.ct.snat ? ['SNAT'] : [])];
  }
}

/** Whether an ipset holds the packet's tuple (hash:ip, hash:net, hash:ip,port, hash:ip,port,ip|net, bitmap:port). */
export function ipsetContains(set: { type: string; entries: readonly string[] }, flags: readonly ('src' | 'dst')[], p: PacketState): boolean {
  const dims = (set.type.split(':')[1] ?? '').split(',');
  const values = dims.map((d, i) => {
    const side = flags[i] ?? flags[flags.length - 1] ?? 'dst';
    if (d === 'port') return { d, v: `${p.protocol}:${side === 'src' ? String(p.srcPort ?? '') : String(p.dport)}` };
    return { d, v: side === 'src' ? p.src : p.dst };
  });
  return set.entries.some((e) => {
    const parts = e.split(' ')[0]?.split(',') ?? [];
    return values.every((x, i) => {
      const part = parts[i] ?? '';
      // bitmap:port entries carry no protocol (the rule's -p decides it).
      if (x.d === 'port') return part.includes(':') ? part === x.v : x.v.endsWith(`:${part}`);
      if (part.includes('/')) return parseCIDR(part)?.contains(x.v) === true;
      return part === x.v;
    });
  });
}

/** Parses `ipset save` output into sets (name → type and entries). */
export function parseIpsetSave(text: string): Map<string, { type: string; entries: string[] }> {
  const sets = new Map<string, { type: string; entries: string[] }>();
  for (const line of text.split('\n')) {
    const t = line.trim().split(/\s+/);
    if (t[0] === 'create' && t[1] !== undefined) sets.set(t[1], { type: t[2] ?? '', entries: [] });
    else if (t[0] === 'add' && t[1] !== undefined && t[2] !== undefined) sets.get(t[1])?.entries.push(t[2]);
  }
  return sets;
}
