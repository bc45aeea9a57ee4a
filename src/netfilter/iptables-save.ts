/**
 * Parser for `iptables-save` output and `iptables-restore` input (both formats; a restore input
 * is read with --noflush semantics: the ruleset is just the chains it declares). Produces a typed
 * ruleset: tables → chains → rules with parsed matches and target. Matches and targets this
 * module does not know are kept as `unknown` (the tracer reports them); structural errors throw
 * IptablesParseError with the line number. Pure: no node: imports.
 */
import { KproxyError } from '../core/errors.js';

export const BUILTIN_CHAINS: Readonly<Record<string, readonly string[]>> = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
};

export class IptablesParseError extends KproxyError {
  constructor(line: number, message: string) {
    super('KP_ERR_TRACE_PARSE', `line ${line}: ${message}`);
  }
}

export interface Negatable<T> { readonly value: T; readonly negated: boolean }
export interface PortRange { readonly from: number; readonly to: number }

export type Match =
  | { readonly kind: 'comment'; readonly module: string; readonly args: readonly string[]; readonly comment: string }
  | { readonly kind: 'port'; readonly module: 'tcp' | 'udp' | 'sctp'; readonly args: readonly string[]; readonly dport?: Negatable<PortRange>; readonly sport?: Negatable<PortRange>; readonly syn?: Negatable<boolean>; readonly tcpFlags?: Negatable<{ mask: string[]; comp: string[] }> }
  | { readonly kind: 'multiport'; readonly module: string; readonly args: readonly string[]; readonly side: 'dst' | 'src' | 'any'; readonly ports: Negatable<readonly PortRange[]> }
  | { readonly kind: 'addrtype'; readonly module: string; readonly args: readonly string[]; readonly srcType?: Negatable<readonly string[]>; readonly dstType?: Negatable<readonly string[]>; readonly limitIfaceIn: boolean; readonly limitIfaceOut: boolean }
  | { readonly kind: 'mark'; readonly module: string; readonly args: readonly string[]; readonly mark: Negatable<{ value: number; mask: number }> }
  | { readonly kind: 'conntrack'; readonly module: string; readonly args: readonly string[]; readonly options: readonly { name: string; negated: boolean; value: string }[] }
  | { readonly kind: 'state'; readonly module: string; readonly args: readonly string[]; readonly states: Negatable<readonly string[]> }
  | { readonly kind: 'statistic'; readonly module: string; readonly args: readonly string[]; readonly mode: 'random' | 'nth'; readonly probability: number; readonly every: number; readonly packet: number; readonly negated: boolean }
  | { readonly kind: 'recent'; readonly module: string; readonly args: readonly string[]; readonly name: string; readonly op: 'set' | 'rcheck' | 'update' | 'remove'; readonly seconds?: number; readonly hitcount?: number; readonly reap: boolean; readonly rttl: boolean; readonly mask?: string; readonly side: 'source' | 'dest'; readonly negated: boolean }
  | { readonly kind: 'set'; readonly module: string; readonly args: readonly string[]; readonly name: string; readonly flags: readonly ('src' | 'dst')[]; readonly negated: boolean }
  | { readonly kind: 'physdev'; readonly module: string; readonly args: readonly string[]; readonly options: readonly { name: string; negated: boolean; value?: string }[] }
  /** Accounting only (upstream's localhost NodePort counters): always matches. */
  | { readonly kind: 'nfacct'; readonly module: string; readonly args: readonly string[]; readonly name: string }
  | { readonly kind: 'unknown'; readonly module: string; readonly args: readonly string[]; readonly reason: string };

export type Target =
  | { readonly kind: 'jump'; readonly chain: string; readonly goto: boolean; readonly args: readonly string[] }
  | { readonly kind: 'ACCEPT' | 'DROP' | 'RETURN'; readonly args: readonly string[] }
  | { readonly kind: 'REJECT'; readonly rejectWith: string; readonly args: readonly string[] }
  | { readonly kind: 'DNAT' | 'SNAT'; readonly to?: { ip?: string; port?: number; portTo?: number; ipRange: boolean }; readonly args: readonly string[] }
  | { readonly kind: 'MASQUERADE'; readonly randomFully: boolean; readonly args: readonly string[] }
  | { readonly kind: 'REDIRECT'; readonly toPort?: number; readonly args: readonly string[] }
  /** Normalized to --set-xmark: mark = (mark & ~mask) ^ value. */
  | { readonly kind: 'MARK'; readonly value: number; readonly mask: number; readonly args: readonly string[] }
  | { readonly kind: 'LOG'; readonly prefix?: string; readonly args: readonly string[] }
  | { readonly kind: 'NOTRACK'; readonly args: readonly string[] }
  | { readonly kind: 'unknown'; readonly name: string; readonly args: readonly string[]; readonly reason: string };

export interface Rule {
  readonly table: string;
  readonly chain: string;
  /** The rule as iptables-save prints it (`-A CHAIN ...`, xtables quoting). */
  readonly text: string;
  /** The argument tokens after the chain name (unquoted). */
  readonly args: readonly string[];
  readonly line: number;
  readonly counters?: { packets: number; bytes: number };
  readonly src?: Negatable<string>;
  readonly dst?: Negatable<string>;
  readonly protocol?: Negatable<string>;
  readonly inInterface?: Negatable<string>;
  readonly outInterface?: Negatable<string>;
  readonly fragment?: Negatable<boolean>;
  readonly matches: readonly Match[];
  readonly target?: Target;
}

export interface Chain {
  readonly name: string;
  readonly builtin: boolean;
  /** Built-in chains: ACCEPT or DROP; user chains: undefined ('-'). */
  policy: 'ACCEPT' | 'DROP' | undefined;
  counters?: { packets: number; bytes: number };
  rules: Rule[];
}

export interface Table {
  readonly name: string;
  readonly chains: Map<string, Chain>;
}

export interface Ruleset {
  readonly tables: Map<string, Table>;
}

export function emptyRuleset(): Ruleset {
  return { tables: new Map() };
}

/** Splits a line the way iptables-restore does: whitespace, "double" or 'single' quotes, backslash escapes. */
export function tokenize(line: string, lineNo = 0): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line.charAt(i);
    if (quote !== undefined) {
      if (c === '\\' && i + 1 < line.length) { cur += line.charAt(++i); continue; }
      if (c === quote) { quote = undefined; continue; }
      cur += c;
      continue;
    }
    if (c === '"' || c === "'") { quote = c; has = true; continue; }
    if (c === ' ' || c === '\t') {
      if (has) out.push(cur);
      cur = ''; has = false;
      continue;
    }
    if (c === '\\' && i + 1 < line.length) { cur += line.charAt(++i); has = true; continue; }
    cur += c; has = true;
  }
  if (quote !== undefined) throw new IptablesParseError(lineNo, 'unterminated quote');
  if (has) out.push(cur);
  return out;
}

/** xtables_save_string: bare when only [A-Za-z0-9_-], else double-quoted with \" \\ \' escaped. */
export function quoteArg(s: string): string {
  if (/^[A-Za-z0-9_-]+$/.test(s)) return s;
  return '"' + s.replace(/["\\']/g, (m) => '\\' + m) + '"';
}

/** Options whose value iptables-save prints with xtables_save_string. */
const STRING_OPTS = new Set(['--comment', '--log-prefix', '--name']);

/** Other values are printed as they are; quoted only if they could not be read back otherwise. */
function quoteBare(s: string): string {
  return /^[A-Za-z0-9_.:/,!+=@-]+$/.test(s) ? s : quoteArg(s);
}

/** Options iptables itself parses (ip_packet_match and the command), with their long forms. */
const GENERIC: Readonly<Record<string, string>> = {
  '-s': 's', '--source': 's', '--src': 's', '-d': 'd', '--destination': 'd', '--dst': 'd',
  '-p': 'p', '--protocol': 'p', '-i': 'i', '--in-interface': 'i', '-o': 'o', '--out-interface': 'o',
  '-j': 'j', '--jump': 'j', '-g': 'g', '--goto': 'g', '-m': 'm', '--match': 'm', '-f': 'f', '--fragment': 'f',
  '-c': 'c', '--set-counters': 'c',
};

/** Options without a value, per module or target. */
const FLAGS = new Set(['--syn', '--set', '--rcheck', '--update', '--remove', '--reap', '--rttl', '--rsource', '--rdest',
  '--limit-iface-in', '--limit-iface-out', '--random', '--random-fully', '--persistent', '--notrack', '--physdev-is-in',
  '--physdev-is-out', '--physdev-is-bridged', '--return-nomatch', '--update-counters', '--update-subcounters', '--log-tcp-sequence',
  '--log-tcp-options', '--log-ip-options', '--log-uid', '--log-macdecode']);
/** Options with two values. */
const TWO = new Set(['--tcp-flags', '--match-set', '--set-counters']);

const KNOWN_TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'REJECT', 'DNAT', 'SNAT', 'MASQUERADE', 'REDIRECT', 'MARK', 'LOG', 'NOTRACK', 'CT',
  'QUEUE', 'NFQUEUE', 'CONNMARK', 'TPROXY', 'TRACE', 'CHECKSUM', 'TCPMSS', 'NFLOG', 'AUDIT', 'CLASSIFY', 'DSCP', 'TOS', 'TTL', 'SET', 'ULOG']);

interface RawOpt { name: string; values: string[]; negated: boolean }

function parseNum(s: string): number | undefined {
  if (/^0x[0-9a-fA-F]+$/.test(s)) return parseInt(s, 16);
  if (/^[0-9]+$/.test(s)) return Number(s);
  return undefined;
}

function parsePortRange(s: string): PortRange | undefined {
  const m = /^([0-9]+)?(?::([0-9]*))?$/.exec(s);
  if (!m) return undefined;
  const from = m[1] === undefined ? 0 : Number(m[1]);
  const to = s.includes(':') ? (m[2] === undefined || m[2] === '' ? 65535 : Number(m[2])) : from;
  if (from > 65535 || to > 65535 || to < from) return undefined;
  return { from, to };
}

function parseMarkValue(s: string): { value: number; mask: number } | undefined {
  const [v, m] = s.split('/');
  const value = parseNum(v ?? '');
  const mask = m === undefined ? 0xffffffff : parseNum(m);
  if (value === undefined || mask === undefined) return undefined;
  return { value: value >>> 0, mask: mask >>> 0 };
}

class Bad extends Error {}
function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Bad(what);
  return v;
}

function buildMatch(module: string, opts: readonly RawOpt[], args: readonly string[]): Match {
  try {
    return buildMatchInner(module, opts, args);
  } catch (e) {
    if (e instanceof Bad) return { kind: 'unknown', module, args, reason: `cannot read ${e.message}` };
    throw e;
  }
}

function buildMatchInner(module: string, opts: readonly RawOpt[], args: readonly string[]): Match {
  const get = (n: string): RawOpt | undefined => opts.find((o) => o.name === n);
  const unknownOpt = (known: readonly string[]): Match | undefined => {
    const bad = opts.find((o) => !known.includes(o.name));
    return bad ? { kind: 'unknown', module, args, reason: `option ${bad.name} of -m ${module} not understood` } : undefined;
  };
  const ports = (o: RawOpt | undefined, what: string): Negatable<PortRange> | undefined =>
    o === undefined ? undefined : { value: need(parsePortRange(o.values[0] ?? ''), `${what} ${o.values[0] ?? ''}`), negated: o.negated };
  switch (module) {
    case 'comment': {
      const c = get('--comment');
      return unknownOpt(['--comment']) ?? { kind: 'comment', module, args, comment: c?.values[0] ?? '' };
    }
    case 'tcp': case 'udp': case 'sctp': {
      const known = ['--dport', '--destination-port', '--sport', '--source-port', ...(module === 'tcp' ? ['--syn', '--tcp-flags'] : [])];
      const u = unknownOpt(known);
      if (u) return u;
      const d = get('--dport') ?? get('--destination-port');
      const s = get('--sport') ?? get('--source-port');
      const syn = get('--syn');
      const fl = get('--tcp-flags');
      const dport = ports(d, '--dport');
      const sport = ports(s, '--sport');
      return {
        kind: 'port', module, args,
        ...(dport ? { dport } : {}), ...(sport ? { sport } : {}),
        ...(syn ? { syn: { value: true, negated: syn.negated } } : {}),
        ...(fl ? { tcpFlags: { value: { mask: (fl.values[0] ?? '').split(','), comp: (fl.values[1] ?? '').split(',') }, negated: fl.negated } } : {}),
      };
    }
    case 'multiport': {
      const u = unknownOpt(['--dports', '--destination-ports', '--sports', '--source-ports', '--ports']);
      if (u) return u;
      const o = need(opts[0], '-m multiport without ports');
      const side = o.name === '--dports' || o.name === '--destination-ports' ? 'dst' : o.name === '--ports' ? 'any' : 'src';
      const list = (o.values[0] ?? '').split(',').map((p) => need(parsePortRange(p), `port ${p}`));
      return { kind: 'multiport', module, args, side, ports: { value: list, negated: o.negated } };
    }
    case 'addrtype': {
      const u = unknownOpt(['--src-type', '--dst-type', '--limit-iface-in', '--limit-iface-out']);
      if (u) return u;
      const s = get('--src-type');
      const d = get('--dst-type');
      return {
        kind: 'addrtype', module, args,
        ...(s ? { srcType: { value: (s.values[0] ?? '').split(','), negated: s.negated } } : {}),
        ...(d ? { dstType: { value: (d.values[0] ?? '').split(','), negated: d.negated } } : {}),
        limitIfaceIn: get('--limit-iface-in') !== undefined, limitIfaceOut: get('--limit-iface-out') !== undefined,
      };
    }
    case 'mark': {
      const u = unknownOpt(['--mark']);
      if (u) return u;
      const o = need(get('--mark'), '-m mark without --mark');
      return { kind: 'mark', module, args, mark: { value: need(parseMarkValue(o.values[0] ?? ''), `mark ${o.values[0] ?? ''}`), negated: o.negated } };
    }
    case 'conntrack': {
      const known = ['--ctstate', '--ctstatus', '--ctproto', '--ctorigsrc', '--ctorigdst', '--ctreplsrc', '--ctrepldst', '--ctorigsrcport', '--ctorigdstport', '--ctreplsrcport', '--ctrepldstport', '--ctdir'];
      const u = unknownOpt(known);
      if (u) return u;
      return { kind: 'conntrack', module, args, options: opts.map((o) => ({ name: o.name, negated: o.negated, value: o.values[0] ?? '' })) };
    }
    case 'state': {
      const u = unknownOpt(['--state']);
      if (u) return u;
      const o = need(get('--state'), '-m state without --state');
      return { kind: 'state', module, args, states: { value: (o.values[0] ?? '').split(','), negated: o.negated } };
    }
    case 'statistic': {
      const u = unknownOpt(['--mode', '--probability', '--every', '--packet']);
      if (u) return u;
      const mode = get('--mode')?.values[0];
      if (mode !== 'random' && mode !== 'nth') throw new Bad(`--mode ${mode ?? ''}`);
      const p = get('--probability');
      const probability = p ? Number(p.values[0]) : 1;
      if (!(probability >= 0 && probability <= 1)) throw new Bad(`--probability ${p?.values[0] ?? ''}`);
      const every = Number(get('--every')?.values[0] ?? '1');
      const packet = Number(get('--packet')?.values[0] ?? '0');
      return { kind: 'statistic', module, args, mode, probability, every, packet, negated: (p?.negated ?? false) || (get('--every')?.negated ?? false) };
    }
    case 'recent': {
      const u = unknownOpt(['--name', '--set', '--rcheck', '--update', '--remove', '--seconds', '--hitcount', '--reap', '--rttl', '--mask', '--rsource', '--rdest']);
      if (u) return u;
      const opO = opts.find((o) => ['--set', '--rcheck', '--update', '--remove'].includes(o.name));
      const o = need(opO, '-m recent without --set/--rcheck/--update/--remove');
      const op = o.name.slice(2) as 'set' | 'rcheck' | 'update' | 'remove';
      const sec = get('--seconds');
      const hit = get('--hitcount');
      const mask = get('--mask');
      return {
        kind: 'recent', module, args, name: get('--name')?.values[0] ?? 'DEFAULT', op,
        ...(sec ? { seconds: Number(sec.values[0]) } : {}), ...(hit ? { hitcount: Number(hit.values[0]) } : {}),
        reap: get('--reap') !== undefined, rttl: get('--rttl') !== undefined,
        ...(mask?.values[0] !== undefined ? { mask: mask.values[0] } : {}),
        side: get('--rdest') ? 'dest' : 'source', negated: o.negated,
      };
    }
    case 'set': {
      const u = unknownOpt(['--match-set', '--return-nomatch', '--update-counters', '--update-subcounters']);
      if (u) return u;
      const o = need(get('--match-set'), '-m set without --match-set');
      const flags = (o.values[1] ?? '').split(',').map((f) => {
        if (f !== 'src' && f !== 'dst') throw new Bad(`set flag ${f}`);
        return f;
      });
      return { kind: 'set', module, args, name: o.values[0] ?? '', flags, negated: o.negated };
    }
    case 'physdev': {
      const u = unknownOpt(['--physdev-in', '--physdev-out', '--physdev-is-in', '--physdev-is-out', '--physdev-is-bridged']);
      if (u) return u;
      return { kind: 'physdev', module, args, options: opts.map((o) => ({ name: o.name, negated: o.negated, ...(o.values[0] !== undefined ? { value: o.values[0] } : {}) })) };
    }
    case 'nfacct':
      return unknownOpt(['--nfacct-name']) ?? { kind: 'nfacct', module, args, name: get('--nfacct-name')?.values[0] ?? '' };
    default:
      return { kind: 'unknown', module, args, reason: `match -m ${module} not supported by the tracer` };
  }
}

function parseNatTo(s: string): { ip?: string; port?: number; portTo?: number; ipRange: boolean } {
  let host = s;
  let port: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.+))?$/.exec(s);
  if (v6) { host = v6[1] ?? ''; port = v6[2]; } else if (s.split(':').length === 2) { [host = '', port] = s.split(':'); }
  const ipRange = host.includes('-');
  const ip = host.split('-')[0];
  const [pf, pt] = (port ?? '').split('-');
  const p = pf === undefined || pf === '' ? undefined : need(parseNum(pf), `port ${pf}`);
  const q = pt === undefined ? undefined : need(parseNum(pt), `port ${pt}`);
  return { ...(ip ? { ip } : {}), ...(p !== undefined ? { port: p } : {}), ...(q !== undefined ? { portTo: q } : {}), ipRange };
}

function buildTarget(name: string, goto: boolean, opts: readonly RawOpt[], args: readonly string[]): Target {
  if (!KNOWN_TARGETS.has(name)) return { kind: 'jump', chain: name, goto, args };
  const get = (n: string): string | undefined => opts.find((o) => o.name === n)?.values[0];
  const only = (known: readonly string[]): Target | undefined => {
    const bad = opts.find((o) => !known.includes(o.name));
    return bad ? { kind: 'unknown', name, args, reason: `option ${bad.name} of -j ${name} not understood` } : undefined;
  };
  try {
    switch (name) {
      case 'ACCEPT': case 'DROP': case 'RETURN':
        return only([]) ?? { kind: name, args };
      case 'REJECT':
        return only(['--reject-with']) ?? { kind: 'REJECT', rejectWith: get('--reject-with') ?? 'icmp-port-unreachable', args };
      case 'DNAT': case 'SNAT': {
        const opt = name === 'DNAT' ? '--to-destination' : '--to-source';
        const u = only([opt, '--random', '--persistent', '--random-fully']);
        if (u) return u;
        const to = get(opt);
        return to === undefined ? { kind: name, args } : { kind: name, to: parseNatTo(to), args };
      }
      case 'MASQUERADE':
        return only(['--random', '--random-fully', '--to-ports']) ?? { kind: 'MASQUERADE', randomFully: opts.some((o) => o.name === '--random-fully'), args };
      case 'REDIRECT': {
        const u = only(['--to-ports', '--random']);
        if (u) return u;
        const p = get('--to-ports');
        return p === undefined ? { kind: 'REDIRECT', args } : { kind: 'REDIRECT', toPort: need(parseNum(p.split('-')[0] ?? ''), `--to-ports ${p}`), args };
      }
      case 'MARK': {
        const u = only(['--set-xmark', '--set-mark', '--or-mark', '--and-mark', '--xor-mark']);
        if (u) return u;
        const o = need(opts[0], '-j MARK without an operation');
        const v = need(parseMarkValue(o.values[0] ?? ''), `mark ${o.values[0] ?? ''}`);
        switch (o.name) {
          case '--set-xmark': return { kind: 'MARK', value: v.value, mask: v.mask, args };
          case '--set-mark': return { kind: 'MARK', value: v.value, mask: (v.mask | v.value) >>> 0, args };
          case '--or-mark': return { kind: 'MARK', value: v.value, mask: v.value, args };
          case '--xor-mark': return { kind: 'MARK', value: v.value, mask: 0, args };
          default: return { kind: 'MARK', value: 0, mask: (~v.value) >>> 0, args };
        }
      }
      case 'LOG': {
        const p = get('--log-prefix');
        return p === undefined ? { kind: 'LOG', args } : { kind: 'LOG', prefix: p, args };
      }
      case 'NOTRACK':
        return { kind: 'NOTRACK', args };
      case 'CT':
        if (opts.length === 1 && opts[0]?.name === '--notrack') return { kind: 'NOTRACK', args };
        return { kind: 'unknown', name, args, reason: 'target CT (other than --notrack) not supported by the tracer' };
      default:
        return { kind: 'unknown', name, args, reason: `target ${name} not supported by the tracer` };
    }
  } catch (e) {
    if (e instanceof Bad) return { kind: 'unknown', name, args, reason: `cannot read ${e.message}` };
    throw e;
  }
}

/** Parses the arguments of one rule (everything after `-A CHAIN`). */
export function parseRuleArgs(table: string, chain: string, args: readonly string[], line: number, counters?: { packets: number; bytes: number }): Rule {
  let src: Negatable<string> | undefined;
  let dst: Negatable<string> | undefined;
  let protocol: Negatable<string> | undefined;
  let inInterface: Negatable<string> | undefined;
  let outInterface: Negatable<string> | undefined;
  let fragment: Negatable<boolean> | undefined;
  let ctr = counters;
  const modules: { name: string; opts: RawOpt[]; args: string[] }[] = [];
  let target: { name: string; goto: boolean; opts: RawOpt[]; args: string[] } | undefined;
  let current: { opts: RawOpt[]; args: string[] } | undefined;
  let negate = false;
  for (let i = 0; i < args.length; i++) {
    const t = args[i] ?? '';
    if (t === '!') { negate = true; continue; }
    const g = GENERIC[t];
    const val = (): string => {
      const v = args[++i];
      if (v === undefined) throw new IptablesParseError(line, `option ${t} needs a value`);
      return v;
    };
    if (g !== undefined) {
      const n = negate;
      negate = false;
      switch (g) {
        case 's': src = { value: val(), negated: n }; break;
        case 'd': dst = { value: val(), negated: n }; break;
        case 'p': protocol = { value: val().toLowerCase(), negated: n }; break;
        case 'i': inInterface = { value: val(), negated: n }; break;
        case 'o': outInterface = { value: val(), negated: n }; break;
        case 'f': fragment = { value: true, negated: n }; break;
        case 'c': {
          const p = Number(val()); const b = Number(val());
          ctr = { packets: p, bytes: b };
          break;
        }
        case 'm': {
          const m = { name: val(), opts: [], args: [] };
          modules.push(m);
          current = m;
          break;
        }
        default: {
          target = { name: val(), goto: g === 'g', opts: [], args: [] };
          current = target;
        }
      }
      continue;
    }
    if (!t.startsWith('--')) throw new IptablesParseError(line, `unexpected argument ${JSON.stringify(t)}`);
    // Implicit protocol match (`-p tcp --dport 80` without -m tcp).
    if (current === undefined && protocol !== undefined && ['--dport', '--sport', '--syn', '--tcp-flags', '--destination-port', '--source-port'].includes(t)) {
      const m = { name: protocol.value, opts: [], args: [] };
      modules.push(m);
      current = m;
    }
    if (current === undefined) throw new IptablesParseError(line, `option ${t} outside any -m match or -j target`);
    const o: RawOpt = { name: t, values: [], negated: negate };
    const n = FLAGS.has(t) ? 0 : TWO.has(t) ? 2 : 1;
    for (let k = 0; k < n; k++) {
      const nv = args[i + 1];
      if (nv === undefined) throw new IptablesParseError(line, `option ${t} needs a value`);
      o.values.push(nv);
      i++;
    }
    if (negate) current.args.push('!');
    current.args.push(t, ...o.values);
    negate = false;
    current.opts.push(o);
  }
  const matches = modules.map((m) => buildMatch(m.name, m.opts, ['-m', m.name, ...m.args]));
  const tgt = target ? buildTarget(target.name, target.goto, target.opts, [target.goto ? '-g' : '-j', target.name, ...target.args]) : undefined;
  const text = ['-A', chain, ...args.map((a, i) => (STRING_OPTS.has(args[i - 1] ?? '') ? quoteArg(a) : quoteBare(a)))].join(' ');
  return {
    table, chain, text, args: [...args], line,
    ...(ctr ? { counters: ctr } : {}),
    ...(src ? { src } : {}), ...(dst ? { dst } : {}), ...(protocol ? { protocol } : {}),
    ...(inInterface ? { inInterface } : {}), ...(outInterface ? { outInterface } : {}), ...(fragment ? { fragment } : {}),
    matches, ...(tgt ? { target: tgt } : {}),
  };
}

function sameArgs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Parses `iptables-save` output or `iptables-restore` input into a ruleset. With `base`, the
 * text is applied on top of it as `iptables-restore --noflush` would (declared chains are
 * created or flushed; others are kept). Built-in chains a table does not declare exist empty
 * with policy ACCEPT, as in the kernel.
 */
export function parseIptablesSave(text: string, base?: Ruleset): Ruleset {
  const rs: Ruleset = base ? cloneRuleset(base) : emptyRuleset();
  let table: Table | undefined;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    const line = (lines[n] ?? '').replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      const name = line.slice(1).trim();
      table = rs.tables.get(name);
      if (!table) {
        table = { name, chains: new Map() };
        for (const c of BUILTIN_CHAINS[name] ?? []) table.chains.set(c, { name: c, builtin: true, policy: 'ACCEPT', rules: [] });
        rs.tables.set(name, table);
      }
      continue;
    }
    if (!table) throw new IptablesParseError(lineNo, `${JSON.stringify(line.slice(0, 40))} before any *table line`);
    const tbl: Table = table;
    if (line === 'COMMIT') { table = undefined; continue; }
    if (line.startsWith(':')) {
      const m = /^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?$/.exec(line);
      if (!m) throw new IptablesParseError(lineNo, `bad chain declaration ${JSON.stringify(line)}`);
      const name = m[1] ?? '';
      const pol = m[2] ?? '-';
      const builtin = (BUILTIN_CHAINS[tbl.name] ?? []).includes(name);
      if (pol !== '-' && pol !== 'ACCEPT' && pol !== 'DROP') throw new IptablesParseError(lineNo, `bad policy ${pol} for chain ${name}`);
      if (!builtin && pol !== '-') throw new IptablesParseError(lineNo, `user chain ${name} cannot have policy ${pol}`);
      const counters = m[3] !== undefined ? { packets: Number(m[3]), bytes: Number(m[4]) } : undefined;
      const chain: Chain = { name, builtin, policy: builtin ? (pol === '-' ? 'ACCEPT' : pol) : undefined, rules: [], ...(counters ? { counters } : {}) };
      tbl.chains.set(name, chain);
      continue;
    }
    let tokens = tokenize(line, lineNo);
    let counters: { packets: number; bytes: number } | undefined;
    const cm = /^\[(\d+):(\d+)\]$/.exec(tokens[0] ?? '');
    if (cm) { counters = { packets: Number(cm[1]), bytes: Number(cm[2]) }; tokens = tokens.slice(1); }
    const cmd = tokens[0] ?? '';
    const chainName = tokens[1];
    const getChain = (): Chain => {
      if (chainName === undefined) throw new IptablesParseError(lineNo, `${cmd} needs a chain`);
      const c = tbl.chains.get(chainName);
      if (!c) throw new IptablesParseError(lineNo, `chain ${chainName} does not exist in table ${tbl.name}`);
      return c;
    };
    switch (cmd) {
      case '-A': case '--append': {
        const c = getChain();
        c.rules.push(parseRuleArgs(tbl.name, c.name, tokens.slice(2), lineNo, counters));
        break;
      }
      case '-I': case '--insert': {
        const c = getChain();
        let rest = tokens.slice(2);
        let pos = 1;
        if (/^[0-9]+$/.test(rest[0] ?? '')) { pos = Number(rest[0]); rest = rest.slice(1); }
        c.rules.splice(Math.max(0, pos - 1), 0, parseRuleArgs(tbl.name, c.name, rest, lineNo, counters));
        break;
      }
      case '-D': case '--delete': {
        const c = getChain();
        const rest = tokens.slice(2);
        const idx = rest.length === 1 && /^[0-9]+$/.test(rest[0] ?? '') ? Number(rest[0]) - 1 : c.rules.findIndex((r) => sameArgs(r.args, rest));
        if (idx < 0 || idx >= c.rules.length) throw new IptablesParseError(lineNo, `-D: no such rule in ${c.name}`);
        c.rules.splice(idx, 1);
        break;
      }
      case '-F': case '--flush':
        if (chainName === undefined) for (const c of tbl.chains.values()) c.rules = [];
        else getChain().rules = [];
        break;
      case '-X': case '--delete-chain':
        if (chainName === undefined) {
          for (const c of [...tbl.chains.values()]) if (!c.builtin) tbl.chains.delete(c.name);
        } else {
          const c = getChain();
          if (c.builtin) throw new IptablesParseError(lineNo, `cannot delete built-in chain ${c.name}`);
          // As the kernel (and libiptc) refuse: a chain a rule still jumps to cannot go.
          for (const other of tbl.chains.values()) {
            if (other.rules.some((r) => r.target?.kind === 'jump' && r.target.chain === c.name)) throw new IptablesParseError(lineNo, `cannot delete chain ${c.name}: ${other.name} jumps to it`);
          }
          tbl.chains.delete(c.name);
        }
        break;
      case '-N': case '--new-chain':
        if (chainName === undefined) throw new IptablesParseError(lineNo, '-N needs a chain');
        if (tbl.chains.has(chainName)) throw new IptablesParseError(lineNo, `chain ${chainName} already exists`);
        tbl.chains.set(chainName, { name: chainName, builtin: false, policy: undefined, rules: [] });
        break;
      case '-P': case '--policy': {
        const c = getChain();
        const p = tokens[2];
        if (!c.builtin || (p !== 'ACCEPT' && p !== 'DROP')) throw new IptablesParseError(lineNo, `bad -P for ${c.name}`);
        c.policy = p;
        break;
      }
      default:
        throw new IptablesParseError(lineNo, `unsupported command ${JSON.stringify(cmd)}`);
    }
  }
  if (table) throw new IptablesParseError(lines.length, `table ${table.name} has no COMMIT`);
  return rs;
}

export function cloneRuleset(rs: Ruleset): Ruleset {
  const tables = new Map<string, Table>();
  for (const [n, t] of rs.tables) {
    const chains = new Map<string, Chain>();
    for (const [cn, c] of t.chains) chains.set(cn, { ...c, rules: [...c.rules] });
    tables.set(n, { name: n, chains });
  }
  return { tables };
}

/** Writes the ruleset the way iptables-save does (without the header comments). */
export function serializeRuleset(rs: Ruleset, options: { counters?: boolean } = {}): string {
  const out: string[] = [];
  for (const t of rs.tables.values()) {
    out.push(`*${t.name}`);
    for (const c of t.chains.values()) {
      const ctr = c.counters ?? { packets: 0, bytes: 0 };
      out.push(`:${c.name} ${c.policy ?? '-'} [${ctr.packets}:${ctr.bytes}]`);
    }
    for (const c of t.chains.values()) {
      for (const r of c.rules) out.push(options.counters && r.counters ? `[${r.counters.packets}:${r.counters.bytes}] ${r.text}` : r.text);
    }
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/** Every unknown match or target in the ruleset, for reporting. */
export function unknownParts(rs: Ruleset): { table: string; chain: string; line: number; reason: string }[] {
  const out: { table: string; chain: string; line: number; reason: string }[] = [];
  for (const t of rs.tables.values()) {
    for (const c of t.chains.values()) {
      for (const r of c.rules) {
        for (const m of r.matches) if (m.kind === 'unknown') out.push({ table: t.name, chain: c.name, line: r.line, reason: m.reason });
        if (r.target?.kind === 'unknown') out.push({ table: t.name, chain: c.name, line: r.line, reason: r.target.reason });
      }
    }
  }
  return out;
}
