/**
 * The nftables evaluator for the tracer: every base chain of a table of the packet's family
 * (`ip`/`ip6`/`inet`) takes part in the hook walk at its own hook and priority, so the walker
 * interleaves it with the iptables tables (and the conntrack hook at -200). Within a chain, rules
 * run in order; each rule's statements run left to right: a false match ends the rule, verdicts
 * (jump/goto/return/accept/drop/reject/continue, also from a vmap lookup) act, `meta mark set`
 * changes the mark and goes on, and the nat statements (dnat, snat, masquerade, redirect) are
 * terminal like in the kernel (they accept for this base chain). `numgen random mod N` forks the
 * walk (each value with probability 1/N); a lookup in a set that rules `update`/`add` (session
 * affinity) forks into "client seen before" and "not", unless the dump holds the address.
 * Unknown expressions are reported and the rule counts as not matching.
 */
import { parseCIDR, parseIPv4 } from '../core/ip.js';
import { exprText, isObject, ruleText, unwrapElem, type Json, type JsonObject, type NftChain, type NftRuleset, type NftSet, type NftTable } from './nft-ruleset.js';
import { ipFamilyOf, type EvalContext, type Hook, type PacketState, type RuleRef, type RulesetEvaluator, type Stage, type StageOutcome } from './trace.js';

const HOOKS: Readonly<Record<string, Hook>> = { prerouting: 'PREROUTING', input: 'INPUT', forward: 'FORWARD', output: 'OUTPUT', postrouting: 'POSTROUTING' };
const MAX_DEPTH = 64;

type V = string | number | readonly V[];
type Val = { readonly v: V } | { readonly absent: string } | { readonly unknown: string };
type Walk = { kind: 'return' | 'fallthrough' } | { kind: 'done'; outcome: StageOutcome };

const PROTO_NUM: Readonly<Record<string, string>> = { '6': 'tcp', '17': 'udp', '132': 'sctp', '1': 'icmp', '58': 'ipv6-icmp' };
const hex = (n: number): string => '0x' + (n >>> 0).toString(16);

interface StageInfo { readonly table: NftTable; readonly chain: NftChain }

export class NftablesEvaluator implements RulesetEvaluator {
  readonly name: string;
  private readonly byLabel = new Map<string, StageInfo>();
  private readonly stageList: Stage[] = [];
  /** Sets that some rule adds to or updates (affinity): their contents change at run time. */
  private readonly dynamic = new Set<string>();
  private readonly affinityFromDump: boolean;

  /**
   * `affinity`: how to read sets that rules update (session affinity). 'fork' (default, for saved
   * files): an address in the dump is seen, any other forks into seen / not seen, like recent
   * lists in iptables. 'dump' (a dump of the live namespace just taken): the dump is the truth.
   */
  constructor(rs: NftRuleset, family: 'ipv4' | 'ipv6' = 'ipv4', opts: { readonly name?: string; readonly affinity?: 'fork' | 'dump' } = {}) {
    this.name = opts.name ?? 'nftables';
    this.affinityFromDump = opts.affinity === 'dump';
    const families = family === 'ipv4' ? ['ip', 'inet'] : ['ip6', 'inet'];
    for (const t of rs.tables.values()) {
      for (const c of t.chains.values()) {
        for (const r of c.rules) for (const s of r.expr) {
          if (isObject(s) && isObject(s['set'])) { const n = s['set']['set']; if (typeof n === 'string') this.dynamic.add(`${t.family} ${t.name} ${n.replace(/^@/, '')}`); }
        }
      }
      for (const s of t.sets.values()) if (s.flags.includes('dynamic')) this.dynamic.add(`${t.family} ${t.name} ${s.name}`);
      if (!families.includes(t.family)) continue;
      for (const c of t.chains.values()) {
        const hook = c.hook !== undefined ? HOOKS[c.hook] : undefined;
        if (hook === undefined || c.prio === undefined) continue;
        const label = `${t.family} ${t.name} ${c.name}`;
        const nat = c.type === 'nat' ? (hook === 'PREROUTING' || hook === 'OUTPUT' ? 'dst' : 'src') : undefined;
        this.byLabel.set(label, { table: t, chain: c });
        this.stageList.push({ hook, priority: c.prio, label, ...(nat !== undefined ? { nat } : {}) });
      }
    }
  }

  stages(): readonly Stage[] {
    return this.stageList;
  }

  evaluate(stage: Stage, p: PacketState, ctx: EvalContext): StageOutcome {
    const info = this.byLabel.get(stage.label);
    if (!info) return { kind: 'accept' };
    const r = this.walk(info.table, info.chain.name, stage, p, ctx, 0);
    if (r.kind === 'done') return r.outcome;
    const policy = info.chain.policy ?? 'accept';
    ctx.emit({ kind: 'policy', table: `${info.table.family} ${info.table.name}`, chain: info.chain.name, policy, depth: 0 });
    return policy === 'drop' ? { kind: 'drop' } : { kind: 'accept' };
  }

  private walk(t: NftTable, chainName: string, stage: Stage, p: PacketState, ctx: EvalContext, depth: number): Walk {
    const tname = `${t.family} ${t.name}`;
    const chain = t.chains.get(chainName);
    if (!chain) { ctx.warn(`chain ${tname} ${chainName} does not exist: treated as empty`, depth); return { kind: 'fallthrough' }; }
    if (depth > MAX_DEPTH) { ctx.warn(`jumps nested deeper than ${MAX_DEPTH} at ${chainName}: stopped (a loop?)`, depth); return { kind: 'done', outcome: { kind: 'drop' } }; }
    for (let i = 0; i < chain.rules.length; i++) {
      const rule = chain.rules[i];
      if (!rule) continue;
      const ref: RuleRef = { table: tname, chain: chainName, index: i + 1, text: rule.text };
      const r = this.rule(t, rule.expr, ref, stage, p, ctx, depth);
      if (r === 'next') continue;
      // The end of a chain entered by goto: back to this chain's caller, silently (as iptables).
      if (r === 'goto-end') return { kind: 'return' };
      if (r === 'return') { ctx.emit({ kind: 'return', table: tname, chain: chainName, depth, how: 'RETURN' }); return { kind: 'return' }; }
      return r;
    }
    if (chain.hook === undefined) ctx.emit({ kind: 'return', table: tname, chain: chainName, depth, how: 'end of chain' });
    return { kind: 'fallthrough' };
  }

  /** Runs one rule: 'next' goes on with the next rule, 'return' returns from this chain. */
  private rule(t: NftTable, expr: readonly Json[], ref: RuleRef, stage: Stage, p: PacketState, ctx: EvalContext, depth: number): 'next' | 'return' | 'goto-end' | Walk {
    const effects: string[] = [];
    let emitted = false;
    const emitRule = (effect?: string): void => {
      const all = [...effects, ...(effect !== undefined ? [effect] : [])];
      ctx.emit({ kind: 'rule', ...ref, depth, ...(all.length > 0 ? { effect: all.join('; ') } : {}) });
      emitted = true;
    };
    const verdict = (v: Json, how: string): 'next' | 'return' | 'goto-end' | Walk => {
      const vo = isObject(v) ? v : {};
      const [k] = Object.keys(vo);
      switch (k) {
        case 'jump': case 'goto': {
          const target = isObject(vo[k]) ? vo[k]['target'] : undefined;
          if (typeof target !== 'string') { ctx.warn(`${k} without a target: ignored`, depth); return 'next'; }
          if (!emitted) emitRule(how !== '' ? `${how}: ${k} ${target}` : undefined);
          const r = this.walk(t, target, stage, p, ctx, depth + 1);
          if (r.kind === 'done') return r;
          // After a goto, the end of the target chain returns to this chain's caller.
          return k === 'goto' ? 'goto-end' : 'next';
        }
        case 'accept': emitRule(`${how !== '' ? `${how}: ` : ''}accept: this base chain is done with the packet`); return { kind: 'done', outcome: { kind: 'accept' } };
        case 'drop': emitRule(`${how !== '' ? `${how}: ` : ''}drop`); return { kind: 'done', outcome: { kind: 'drop' } };
        case 'return': emitRule(how !== '' ? `${how}: return` : undefined); return 'return';
        case 'continue': emitRule(`${how !== '' ? `${how}: ` : ''}continue`); return 'next';
        default: ctx.warn(`unknown verdict ${JSON.stringify(v)}: assumed continue`, depth); return 'next';
      }
    };
    for (const s of expr) {
      if (!isObject(s)) { ctx.warn(`unknown statement ${JSON.stringify(s)}: ignored`, depth); continue; }
      const [k] = Object.keys(s);
      const v = k !== undefined ? s[k] : undefined;
      const vo: JsonObject = isObject(v) ? v : {};
      switch (k) {
        case 'match': {
          const m = this.match(t, vo, ref, p, ctx, depth);
          if (m === false) return 'next';
          if (m !== true) {
            ctx.emit({ kind: 'branch', ...ref, depth, matched: false, reason: 'cannot be decided (see the note)' });
            ctx.warn(`${m.unknown}: assumed not matching (${ref.table} ${ref.chain} rule ${ref.index})`, depth);
            return 'next';
          }
          break;
        }
        case 'counter': case 'comment': case 'log': case 'limit': case 'quota':
          if (k === 'limit' || k === 'quota') ctx.warn(`${k} is not evaluated: assumed within the limit`, depth);
          break;
        case 'jump': case 'goto': case 'accept': case 'drop': case 'return': case 'continue':
          return verdict(s, '');
        case 'reject': {
          const with_ = v === null || v === undefined ? 'icmp port-unreachable' : `${exprText(vo['type'] ?? 'icmp')}${vo['expr'] !== undefined ? ` ${exprText(vo['expr'])}` : ''}`;
          emitRule(`reject with ${with_}`);
          return { kind: 'done', outcome: { kind: 'reject', with: with_ } };
        }
        case 'vmap': {
          const key = vo['key'];
          let kv: Val;
          if (isObject(key) && isObject(key['numgen'])) {
            const r = this.numgen(key['numgen'], ref, ctx, depth);
            if (r === undefined) return 'next';
            kv = { v: r };
          } else kv = this.value(key, p, ctx);
          if ('unknown' in kv) {
            ctx.emit({ kind: 'branch', ...ref, depth, matched: false, reason: 'cannot be decided (see the note)' });
            ctx.warn(`${kv.unknown}: lookup assumed to find nothing (${ref.table} ${ref.chain} rule ${ref.index})`, depth);
            return 'next';
          }
          if ('absent' in kv) return 'next';
          const data = vo['data'];
          const elems = this.elems(t, data);
          if (elems === undefined) { ctx.warn(`vmap ${exprText(data)}: no such map: lookup finds nothing`, depth); return 'next'; }
          const keyText = showV(kv.v);
          const hit = elems.elems.find((e) => this.matchPattern(t, kv.v, e.key) === true);
          if (hit === undefined || hit.data === undefined) {
            ctx.emit({ kind: 'branch', ...ref, depth, matched: false, reason: `no element ${keyText} in ${elems.name}` });
            return 'next';
          }
          return verdict(hit.data, `${elems.name}[${keyText}]`);
        }
        case 'mangle': {
          const key = vo['key'];
          if (isObject(key) && isObject(key['meta']) && key['meta']['key'] === 'mark') {
            const nv = this.value(vo['value'], p, ctx);
            if (!('v' in nv) || typeof nv.v !== 'number') { ctx.warn(`meta mark set ${exprText(vo['value'])}: value unknown, mark unchanged`, depth); break; }
            const before = p.mark;
            p.mark = nv.v >>> 0;
            effects.push(`mark ${hex(before)} -> ${hex(p.mark)}`);
          } else ctx.warn(`${exprText(key)} set ...: not modelled, ignored`, depth);
          break;
        }
        case 'dnat': case 'redirect': {
          if (stage.nat !== 'dst') { emitRule(`${k} outside a nat prerouting/output chain: ignored`); return 'next'; }
          const from = hostPort(p.dst, p.dport);
          let ip: string;
          let port: number | undefined;
          if (k === 'dnat') {
            const a = vo['addr'];
            if (typeof a !== 'string') { ctx.warn(`dnat to ${exprText(a)}: address expression not modelled, ignored`, depth); return 'next'; }
            ip = a;
            const pt = vo['port'];
            port = typeof pt === 'number' ? pt : undefined;
            if (pt !== undefined && typeof pt !== 'number') ctx.warn(`dnat port ${exprText(pt)}: not modelled, port kept`, depth);
          } else {
            ip = stage.hook === 'OUTPUT' ? (p.family === 'ipv6' ? '::1' : '127.0.0.1') : (ctx.node.localAddresses[0] ?? '127.0.0.1');
            const pt = vo['port'];
            port = typeof pt === 'number' ? pt : undefined;
          }
          ctx.setDnat(ip, port, ref);
          emitRule(`${k}: destination ${from} -> ${hostPort(p.dst, p.dport)}`);
          return { kind: 'done', outcome: { kind: 'accept' } };
        }
        case 'snat': case 'masquerade': {
          if (stage.nat !== 'src') { emitRule(`${k} outside a nat postrouting/input chain: ignored`); return 'next'; }
          const flags = vo['flags'];
          const fl = typeof flags === 'string' ? [flags] : Array.isArray(flags) ? flags : [];
          const fully = fl.includes('fully-random');
          if (k === 'snat') {
            const a = vo['addr'];
            ctx.setSnat('SNAT', typeof a === 'string' ? a : undefined, fully, ref);
            emitRule(`snat: source ${p.src} (was ${p.ct?.origSrc ?? '?'})`);
          } else {
            ctx.setSnat('MASQUERADE', undefined, fully, ref);
            emitRule(`masquerade: source becomes the outgoing interface's address${fully ? ' (source port fully randomized)' : ''}`);
          }
          return { kind: 'done', outcome: { kind: 'accept' } };
        }
        case 'set': {
          const name = typeof vo['set'] === 'string' ? vo['set'].replace(/^@/, '') : '?';
          const ev = this.value(vo['elem'], p, ctx);
          if ('v' in ev) {
            ctx.recentSet(`${name}`, showV(ev.v));
            effects.push(`${exprText(vo['op'])}s ${showV(ev.v)} in @${name} (later connections from it stick here)`);
          } else ctx.warn(`set ${exprText(vo['op'])} @${name}: element unknown`, depth);
          break;
        }
        case 'notrack':
          if (p.ct === undefined) p.ct = { state: 'UNTRACKED', dnat: false, snat: false, origSrc: p.src, origDst: p.dst, origSport: p.srcPort, origDport: p.dport };
          effects.push('not tracked by conntrack: no NAT for this packet');
          break;
        default:
          ctx.emit({ kind: 'branch', ...ref, depth, matched: false, reason: 'cannot be decided (see the note)' });
          ctx.warn(`unknown statement ${k ?? '?'} (${ruleText([s])}): rule assumed not matching`, depth);
          return 'next';
      }
    }
    emitRule(effects.length > 0 ? undefined : 'matched, no verdict: next rule');
    return 'next';
  }

  /** `numgen random mod N`: forks into each value 0..N-1 with probability 1/N. */
  private numgen(ng: JsonObject, ref: RuleRef, ctx: EvalContext, depth: number): number | undefined {
    const mod = typeof ng['mod'] === 'number' ? ng['mod'] : 0;
    const offset = typeof ng['offset'] === 'number' ? ng['offset'] : 0;
    if (ng['mode'] !== 'random') { ctx.warn(`numgen ${exprText(ng['mode'])}: depends on a packet counter, shown as random`, depth); }
    if (mod <= 0) { ctx.warn('numgen mod 0: not modelled', depth); return undefined; }
    if (mod === 1) return offset;
    for (let i = 0; i < mod; i++) {
      const remaining = mod - i;
      if (remaining === 1 || ctx.random(1 / remaining)) {
        ctx.emit({ kind: 'branch', ...ref, depth, matched: true, reason: `numgen random mod ${mod} gave ${i + offset}`, probability: 1 / mod });
        return i + offset;
      }
    }
    return undefined;
  }

  private elems(t: NftTable, data: Json | undefined): { name: string; elems: readonly { key: Json; data?: Json }[] } | undefined {
    if (typeof data === 'string' && data.startsWith('@')) {
      const s = t.sets.get(data.slice(1));
      return s ? { name: data, elems: s.elems } : undefined;
    }
    if (isObject(data) && Array.isArray(data['set'])) {
      const out: { key: Json; data?: Json }[] = [];
      for (const e of data['set'] as readonly Json[]) {
        if (Array.isArray(e) && e.length === 2) out.push({ key: unwrapElem(e[0] ?? null), data: e[1] ?? null });
        else out.push({ key: unwrapElem(e) });
      }
      return { name: 'vmap', elems: out };
    }
    return undefined;
  }

  private match(t: NftTable, m: JsonObject, ref: RuleRef, p: PacketState, ctx: EvalContext, depth: number): boolean | { unknown: string } {
    const op = typeof m['op'] === 'string' ? m['op'] : '==';
    const left = this.value(m['left'], p, ctx);
    if ('unknown' in left) return left;
    if ('absent' in left) return false;
    const right = m['right'] ?? null;
    // Lookup in a set that rules update at run time (session affinity): fork unless known.
    if (typeof right === 'string' && right.startsWith('@') && this.dynamic.has(`${t.family} ${t.name} ${right.slice(1)}`)) {
      const set = t.sets.get(right.slice(1));
      const addr = showV(left.v);
      const inDump = set?.elems.some((e) => this.matchPattern(t, left.v, e.key) === true) === true;
      const known = inDump || this.affinityFromDump || ctx.node.recent?.[right.slice(1)] !== undefined;
      const seen = inDump || (!this.affinityFromDump && ctx.recentSeen(right.slice(1), addr));
      const hit = op === '!=' ? !seen : seen;
      ctx.emit({
        kind: 'branch', ...ref, depth, matched: hit,
        reason: seen ? `${known ? '' : 'assuming '}${addr} is in ${right}${inDump ? ' (in the dump)' : ''}` : `${known ? '' : 'assuming '}${addr} is not in ${right}${known ? '' : ' (a client not seen before)'}`,
      });
      return hit;
    }
    const r = this.matchPattern(t, left.v, right);
    if (typeof r === 'object') return r;
    switch (op) {
      case '==': case 'in': return r;
      case '!=': return !r;
      case '<': case '>': case '<=': case '>=': {
        if (typeof left.v !== 'number' || typeof right !== 'number') return { unknown: `comparison ${op} on ${exprText(m['left'])}` };
        return op === '<' ? left.v < right : op === '>' ? left.v > right : op === '<=' ? left.v <= right : left.v >= right;
      }
      default: return { unknown: `operator ${op}` };
    }
  }

  /** Whether value v matches a pattern (literal, prefix, range, anonymous set, @set, concat, list). */
  private matchPattern(t: NftTable, v: V, pat: Json): boolean | { unknown: string } {
    if (pat === null || typeof pat === 'boolean') return { unknown: `pattern ${JSON.stringify(pat)}` };
    if (typeof pat === 'string' && pat.startsWith('@')) {
      const s: NftSet | undefined = t.sets.get(pat.slice(1));
      if (!s) return { unknown: `set ${pat} does not exist` };
      return s.elems.some((e) => this.matchPattern(t, v, e.key) === true);
    }
    if (Array.isArray(v) && v.every((x) => typeof x === 'string') && typeof pat === 'string') return v.includes(pat); // ct status flags
    if (typeof pat === 'string' || typeof pat === 'number') return scalarEq(v, pat);
    if (Array.isArray(pat)) return pat.some((x) => this.matchPattern(t, v, x) === true);
    const o = pat as JsonObject;
    if (isObject(o['elem'])) return this.matchPattern(t, v, unwrapElem(o));
    if (Array.isArray(o['set'])) return (o['set'] as readonly Json[]).some((x) => this.matchPattern(t, v, unwrapElem(x)) === true);
    if (Array.isArray(o['concat'])) {
      const parts = o['concat'] as readonly Json[];
      if (!Array.isArray(v) || v.length !== parts.length) return false;
      return parts.every((x, i) => { const vi = v[i]; return vi !== undefined && this.matchPattern(t, vi, x) === true; });
    }
    if (isObject(o['prefix'])) {
      const c = parseCIDR(`${String(o['prefix']['addr'])}/${String(o['prefix']['len'])}`);
      return typeof v === 'string' && c?.contains(v) === true;
    }
    if (Array.isArray(o['range'])) {
      const [a, b] = o['range'] as readonly Json[];
      const n = toNum(v); const lo = toNum(a ?? null); const hi = toNum(b ?? null);
      if (n === undefined || lo === undefined || hi === undefined) return { unknown: `range ${exprText(o)}` };
      return n >= lo && n <= hi;
    }
    return { unknown: `pattern ${exprText(o)}` };
  }

  /** The value of an expression for this packet. */
  private value(e: Json | undefined, p: PacketState, ctx: EvalContext): Val {
    if (typeof e === 'string' || typeof e === 'number') return { v: e };
    if (!isObject(e)) return { unknown: `expression ${JSON.stringify(e ?? null)}` };
    const [k] = Object.keys(e);
    const x = k !== undefined ? e[k] : undefined;
    const xo: JsonObject = isObject(x) ? x : {};
    switch (k) {
      case 'payload': {
        const proto = xo['protocol']; const field = xo['field'];
        if (proto === 'ip' || proto === 'ip6') {
          if ((proto === 'ip') !== (p.family === 'ipv4')) return { absent: `${proto} header` };
          if (field === 'saddr') return { v: p.src };
          if (field === 'daddr') return { v: p.dst };
          if (field === 'protocol' || field === 'nexthdr') return { v: p.protocol };
        }
        if (proto === 'th' || proto === 'tcp' || proto === 'udp' || proto === 'sctp') {
          if (proto !== 'th' && proto !== p.protocol) return { absent: `${proto} header` };
          if (field === 'dport') return { v: p.dport };
          if (field === 'sport') return p.srcPort !== undefined ? { v: p.srcPort } : { unknown: `${proto} sport: source port not given` };
        }
        return { unknown: `payload ${exprText(e)}` };
      }
      case 'meta': {
        switch (xo['key']) {
          case 'l4proto': case 'protocol': return xo['key'] === 'l4proto' ? { v: p.protocol } : { v: p.family === 'ipv4' ? 'ip' : 'ip6' };
          case 'mark': return { v: p.mark };
          case 'nfproto': return { v: p.family };
          case 'iifname': return p.inInterface !== undefined ? { v: p.inInterface } : { unknown: 'meta iifname: incoming interface not given' };
          case 'oifname': return p.outInterface !== undefined ? { v: p.outInterface } : { unknown: 'meta oifname: outgoing interface not known' };
          default: return { unknown: `meta ${exprText(xo['key'])}` };
        }
      }
      case 'ct': {
        const ct = p.ct;
        switch (xo['key']) {
          case 'state': return { v: ct === undefined ? 'invalid' : ct.state === 'UNTRACKED' ? 'untracked' : 'new' };
          case 'status': return { v: ct === undefined ? [] : [...(ct.dnat ? ['dnat'] : []), ...(ct.snat ? ['snat'] : [])] };
          case 'direction': return { v: 'original' };
          default: return { unknown: `ct ${exprText(xo['key'])}` };
        }
      }
      case 'fib': {
        const flags = Array.isArray(xo['flags']) ? xo['flags'] : typeof xo['flags'] === 'string' ? [xo['flags']] : [];
        if (xo['result'] !== 'type') return { unknown: `fib ${exprText(xo['result'])}` };
        if (flags.includes('iif') || flags.includes('oif')) ctx.warn('fib ... iif/oif: the trace checks all node addresses, not just the interface\'s', 0);
        const ip = flags.includes('saddr') ? p.src : p.dst;
        if (ctx.isLocal(ip)) return { v: 'local' };
        if (parseCIDR('224.0.0.0/4')?.contains(ip) === true || ip.toLowerCase().startsWith('ff')) return { v: 'multicast' };
        if (ip === '255.255.255.255') return { v: 'broadcast' };
        return { v: 'unicast' };
      }
      case 'concat': {
        if (!Array.isArray(x)) return { unknown: 'concat' };
        const out: V[] = [];
        for (const part of x as readonly Json[]) {
          const pv = this.value(part, p, ctx);
          if (!('v' in pv)) return pv;
          out.push(pv.v);
        }
        return { v: out };
      }
      case '&': case '|': case '^': {
        if (!Array.isArray(x)) return { unknown: k };
        const a = this.value(x[0], p, ctx); const b = this.value(x[1], p, ctx);
        if (!('v' in a)) return a;
        if (!('v' in b)) return b;
        if (typeof a.v !== 'number' || typeof b.v !== 'number') return { unknown: `${k} on non-numbers` };
        return { v: (k === '&' ? a.v & b.v : k === '|' ? a.v | b.v : a.v ^ b.v) >>> 0 };
      }
      default: return { unknown: `expression ${exprText(e)}` };
    }
  }
}

function toNum(v: V | Json): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    if (/^[0-9]+$/.test(v)) return Number(v);
    const a = parseIPv4(v) !== undefined ? v.split('.').map(Number) : undefined;
    if (a && a.length === 4) return a.reduce((s, o) => s * 256 + o, 0);
  }
  return undefined;
}

function scalarEq(v: V, pat: string | number): boolean {
  if (typeof v !== 'string' && typeof v !== 'number') return false;
  if (typeof v === 'number') return typeof pat === 'number' ? v === pat : /^(0x[0-9a-f]+|[0-9]+)$/i.test(pat) && Number(pat) === v;
  if (typeof pat === 'number') return PROTO_NUM[String(pat)] === v || String(pat) === v;
  if (v === pat) return true;
  if (PROTO_NUM[pat] === v) return true;
  if (ipFamilyOf(v) !== undefined && ipFamilyOf(pat) !== undefined) {
    return parseCIDR(`${pat}/${ipFamilyOf(pat) === 'ipv4' ? 32 : 128}`)?.contains(v) === true;
  }
  return false;
}

function showV(v: V): string {
  return Array.isArray(v) ? v.map((x) => showV(x)).join(' . ') : String(v);
}

function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
