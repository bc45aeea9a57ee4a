/**
 * The packet tracer: walks the first packet of a new connection through the netfilter hooks in
 * kernel order and through the rules of one or more rulesets (evaluators), and returns every
 * possible outcome with its probability.
 *
 * Hook walk (IPv4, kernel priorities): PREROUTING raw(-300) conntrack(-200) mangle(-150)
 * nat(-100, DNAT) → routing → INPUT mangle filter security nat(100, SNAT) | FORWARD mangle
 * filter security → POSTROUTING mangle nat(100, SNAT); local packets: OUTPUT raw conntrack
 * mangle nat(DNAT) filter security → routing → POSTROUTING, and when the destination is local
 * again through lo: PREROUTING, INPUT (nat skipped: the connection's NAT is already set up).
 *
 * Forks: rules whose outcome is random (statistic) or depends on state we do not have (recent
 * lists) make the walk fork. The walker itself is plain sequential code; forks are explored by
 * re-running it with a different decision sequence (depth-first, "matched" first), so every
 * evaluator just asks `ctx.decide(...)` and gets a boolean. Pure: no node: imports.
 */
import { parseCIDR, parseIPv4, parseIPv6 } from '../core/ip.js';

export type Hook = 'PREROUTING' | 'INPUT' | 'FORWARD' | 'OUTPUT' | 'POSTROUTING';
export type Protocol = 'tcp' | 'udp' | 'sctp';

export interface TracePacket {
  readonly src: string;
  readonly srcPort?: number;
  readonly dst: string;
  readonly dport: number;
  readonly protocol: Protocol;
  readonly inInterface?: string;
  /** Only known when given; -o matches are otherwise undecidable (except lo). */
  readonly outInterface?: string;
  readonly origin: 'external' | 'local';
}

export interface NodeContext {
  readonly localAddresses: readonly string[];
  /** ipset contents (`ipset save`), for -m set. */
  readonly ipsets?: ReadonlyMap<string, IpSet>;
  /** Known contents of xt_recent lists (name → addresses); lists not given are unknown and fork. */
  readonly recent?: Readonly<Record<string, readonly string[]>>;
  /** net.ipv4.conf.*.route_localnet (default off: 127/8 from outside is a martian). */
  readonly routeLocalnet?: boolean;
}

export interface IpSet { readonly type: string; readonly entries: readonly string[] }

/** The packet as rules see it at some point of the walk. */
export interface PacketState {
  src: string;
  srcPort: number | undefined;
  dst: string;
  dport: number;
  readonly protocol: Protocol;
  inInterface: string | undefined;
  outInterface: string | undefined;
  mark: number;
  readonly family: 'ipv4' | 'ipv6';
  /** Conntrack: undefined before the conntrack hook assigned one (raw table). */
  ct: { state: 'NEW' | 'UNTRACKED'; dnat: boolean; snat: boolean; origSrc: string; origDst: string; origSport: number | undefined; origDport: number } | undefined;
}

export interface Stage {
  readonly hook: Hook;
  readonly priority: number;
  /** What the output calls it: "nat", "mangle", ... */
  readonly label: string;
  /** NAT stages run only for a connection whose NAT of this kind is not set up yet. */
  readonly nat?: 'dst' | 'src';
}

export type StageOutcome =
  | { readonly kind: 'accept' }
  /** The evaluator took the packet and sends it on itself (IPVS in LOCAL_IN: NF_STOLEN); later stages of this hook do not run. */
  | { readonly kind: 'stolen'; readonly why: string }
  | { readonly kind: 'drop' }
  | { readonly kind: 'reject'; readonly with: string };

export type TraceEvent =
  | { readonly kind: 'hook'; readonly hook: Hook; readonly note?: string }
  | { readonly kind: 'stage'; readonly hook: Hook; readonly label: string; readonly evaluator: string }
  | { readonly kind: 'stage-skipped'; readonly hook: Hook; readonly label: string; readonly reason: string }
  | { readonly kind: 'conntrack'; readonly text: string }
  | { readonly kind: 'rule'; readonly table: string; readonly chain: string; readonly index: number; readonly text: string; readonly depth: number; readonly effect?: string }
  | { readonly kind: 'branch'; readonly table: string; readonly chain: string; readonly index: number; readonly text: string; readonly depth: number; readonly matched: boolean; readonly reason: string; readonly probability?: number }
  | { readonly kind: 'return'; readonly table: string; readonly chain: string; readonly depth: number; readonly how: string }
  | { readonly kind: 'policy'; readonly table: string; readonly chain: string; readonly policy: string; readonly depth: number }
  | { readonly kind: 'note'; readonly text: string; readonly depth: number }
  | { readonly kind: 'routing'; readonly text: string }
  | { readonly kind: 'verdict'; readonly text: string };

export interface EvalContext {
  readonly node: NodeContext;
  emit(e: TraceEvent): void;
  /** Warn about something undecidable or unknown (also collected in the outcome). */
  warn(text: string, depth: number): void;
  /** A random branch: returns whether the branch is taken; the walk forks. */
  random(probability: number): boolean;
  /** Whether `address` is in recent list `name`: known, or an assumption that forks. */
  recentSeen(name: string, address: string): boolean;
  /** Records a recent --set on this path. */
  recentSet(name: string, address: string): void;
  isLocal(ip: string): boolean;
  setDnat(ip: string, port: number | undefined, by: RuleRef): void;
  setSnat(kind: 'MASQUERADE' | 'SNAT', to: string | undefined, randomFully: boolean, by: RuleRef): void;
}

export interface RuleRef { readonly table: string; readonly chain: string; readonly index: number; readonly text: string }

/** A ruleset that can take part in the hook walk: iptables now; nftables and IPVS later. */
export interface RulesetEvaluator {
  readonly name: string;
  stages(): readonly Stage[];
  evaluate(stage: Stage, packet: PacketState, ctx: EvalContext): StageOutcome;
}

export interface Assumption { readonly list: string; readonly address: string; readonly seen: boolean }

export interface TraceOutcome {
  /** Product of the random branch probabilities on this path (within its assumptions). */
  readonly probability: number;
  /** Assumptions about recent lists (session affinity) this path depends on. */
  readonly assumptions: readonly Assumption[];
  /** Events after the trunk (the common prefix of all outcomes). */
  readonly events: readonly TraceEvent[];
  readonly hooks: readonly Hook[];
  readonly matchedRules: readonly RuleRef[];
  readonly verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  readonly rejectWith?: string;
  readonly delivery: 'local' | 'forwarded' | 'sent' | 'none';
  readonly destination: { readonly ip: string; readonly port: number };
  readonly dnat?: { readonly ip: string; readonly port: number; readonly by: RuleRef };
  readonly snat?: { readonly kind: 'MASQUERADE' | 'SNAT'; readonly to?: string; readonly randomFully: boolean; readonly by: RuleRef };
  readonly mark: number;
  readonly warnings: readonly string[];
}

export interface TraceResult {
  readonly packet: TracePacket;
  readonly localAddresses: readonly string[];
  readonly evaluators: readonly string[];
  readonly notes: readonly string[];
  readonly trunk: readonly TraceEvent[];
  /** First-contact outcomes (no recent-list hit) first, then the affinity ones. */
  readonly outcomes: readonly TraceOutcome[];
  /** The DNAT choice set for a client seen for the first time (no affinity entry). */
  readonly choices: readonly { ip: string; port: number; probability: number; verdict: string; masquerade: boolean; delivery: string }[];
  readonly truncated: boolean;
}

const CONNTRACK_PRIORITY = -200;
const MAX_PATHS = 4096;

interface RunLeaf {
  events: TraceEvent[];
  probability: number;
  assumptions: Assumption[];
  hooks: Hook[];
  matched: RuleRef[];
  verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  rejectWith?: string;
  delivery: TraceOutcome['delivery'];
  state: PacketState;
  dnat?: TraceOutcome['dnat'];
  snat?: TraceOutcome['snat'];
  warnings: string[];
}

export function ipFamilyOf(ip: string): 'ipv4' | 'ipv6' | undefined {
  return parseIPv4(ip) !== undefined ? 'ipv4' : parseIPv6(ip) !== undefined ? 'ipv6' : undefined;
}

export function isLocalAddress(ip: string, local: readonly string[]): boolean {
  if (parseCIDR('127.0.0.0/8')?.contains(ip) === true || ip === '::1') return true;
  return local.some((a) => a === ip || (ipFamilyOf(a) === 'ipv6' && ipFamilyOf(ip) === 'ipv6' && parseCIDR(`${a}/128`)?.contains(ip) === true));
}

/** Traces the first packet of a new connection through the rulesets. */
export function tracePacket(packet: TracePacket, node: NodeContext, evaluators: readonly RulesetEvaluator[], notes: readonly string[] = []): TraceResult {
  const leaves: RunLeaf[] = [];
  const stack: boolean[][] = [[]];
  let truncated = false;
  while (stack.length > 0) {
    const prefix = stack.pop() ?? [];
    if (leaves.length >= MAX_PATHS) { truncated = true; break; }
    const taken: boolean[] = [];
    const leaf = runOnce(packet, node, evaluators, (i) => {
      const v = i < prefix.length ? (prefix[i] ?? true) : true;
      taken.push(v);
      return v;
    });
    for (let i = prefix.length; i < taken.length; i++) stack.push([...taken.slice(0, i), !taken[i]]);
    if (leaf.probability > 0) leaves.push(leaf);
  }
  // Trunk: the longest common prefix of all event lists.
  let n = 0;
  const first = leaves[0]?.events ?? [];
  if (leaves.length === 1) n = first.length;
  else {
    outer: for (; n < first.length; n++) {
      const e = JSON.stringify(first[n]);
      for (const l of leaves) if (JSON.stringify(l.events[n]) !== e) break outer;
    }
  }
  const seenCount = (l: RunLeaf): number => l.assumptions.filter((a) => a.seen).length;
  const sorted = leaves.map((l, i) => ({ l, i })).sort((a, b) => seenCount(a.l) - seenCount(b.l) || a.i - b.i).map((x) => x.l);
  const outcomes: TraceOutcome[] = sorted.map((l) => ({
    probability: l.probability,
    assumptions: l.assumptions,
    events: l.events.slice(n),
    hooks: l.hooks,
    matchedRules: l.matched,
    verdict: l.verdict,
    ...(l.rejectWith !== undefined ? { rejectWith: l.rejectWith } : {}),
    delivery: l.delivery,
    destination: { ip: l.state.dst, port: l.state.dport },
    ...(l.dnat ? { dnat: l.dnat } : {}),
    ...(l.snat ? { snat: l.snat } : {}),
    mark: l.state.mark,
    warnings: [...new Set(l.warnings)],
  }));
  const choices = outcomes.filter((o) => o.assumptions.every((a) => !a.seen)).map((o) => ({
    ip: o.destination.ip, port: o.destination.port, probability: o.probability, verdict: o.verdict, masquerade: o.snat !== undefined, delivery: o.delivery,
  }));
  const allWarnings = [...new Set(outcomes.flatMap((o) => o.warnings))];
  return {
    packet, localAddresses: [...node.localAddresses], evaluators: evaluators.map((e) => e.name),
    notes: [...notes, ...allWarnings], trunk: first.slice(0, n), outcomes, choices, truncated,
  };
}

/** Exact kernel statistic probability: xt_statistic keeps round(p * 2^31) and compares 31 random bits. */
export function kernelProbability(p: number): number {
  return Math.round(p * 0x80000000) / 0x80000000;
}

function runOnce(packet: TracePacket, node: NodeContext, evaluators: readonly RulesetEvaluator[], decide: (i: number) => boolean): RunLeaf {
  const family = ipFamilyOf(packet.dst) ?? 'ipv4';
  const state: PacketState = {
    src: packet.src, srcPort: packet.srcPort, dst: packet.dst, dport: packet.dport, protocol: packet.protocol,
    inInterface: packet.origin === 'external' ? packet.inInterface : undefined, outInterface: undefined, mark: 0, family, ct: undefined,
  };
  const leaf: RunLeaf = { events: [], probability: 1, assumptions: [], hooks: [], matched: [], verdict: 'ACCEPT', delivery: 'none', state, warnings: [] };
  let decisions = 0;
  const recentSets = new Set<string>();
  const natDone = { dst: false, src: false };
  const local = (ip: string): boolean => isLocalAddress(ip, node.localAddresses);
  const ctx: EvalContext = {
    node,
    emit: (e) => {
      leaf.events.push(e);
      if (e.kind === 'rule' || (e.kind === 'branch' && e.matched)) leaf.matched.push({ table: e.table, chain: e.chain, index: e.index, text: e.text });
    },
    warn: (text, depth) => { leaf.events.push({ kind: 'note', text, depth }); leaf.warnings.push(text); },
    random: (p) => {
      const q = kernelProbability(p);
      if (q >= 1) return true;
      if (q <= 0) return false;
      const v = decide(decisions++);
      leaf.probability *= v ? q : 1 - q;
      return v;
    },
    recentSeen: (name, address) => {
      if (recentSets.has(`${name}|${address}`)) return true;
      const known = node.recent?.[name];
      if (known !== undefined) return known.includes(address);
      const prior = leaf.assumptions.find((a) => a.list === name && a.address === address);
      if (prior) return prior.seen;
      const v = decide(decisions++);
      leaf.assumptions.push({ list: name, address, seen: v });
      return v;
    },
    recentSet: (name, address) => { recentSets.add(`${name}|${address}`); },
    isLocal: local,
    setDnat: (ip, port, by) => {
      state.dst = ip;
      if (port !== undefined) state.dport = port;
      if (state.ct) state.ct.dnat = true;
      natDone.dst = true;
      leaf.dnat = { ip, port: state.dport, by };
    },
    setSnat: (kind, to, randomFully, by) => {
      if (to !== undefined) state.src = to;
      if (state.ct) state.ct.snat = true;
      natDone.src = true;
      leaf.snat = { kind, ...(to !== undefined ? { to } : {}), randomFully, by };
    },
  };
  const stages = evaluators.flatMap((ev) => ev.stages().map((s) => ({ s, ev })));

  /** Runs one hook; returns false when the packet was dropped or rejected. */
  const runHook = (hook: Hook, note?: string): boolean => {
    leaf.hooks.push(hook);
    ctx.emit(note !== undefined ? { kind: 'hook', hook, note } : { kind: 'hook', hook });
    const here = stages.filter((x) => x.s.hook === hook);
    let stolen = false;
    const withCt: { priority: number; run: () => boolean }[] = here.map((x) => ({
      priority: x.s.priority,
      run: (): boolean => {
        const s = x.s;
        if (s.nat !== undefined) {
          if (state.ct?.state === 'UNTRACKED') { ctx.emit({ kind: 'stage-skipped', hook, label: s.label, reason: 'untracked packet: no NAT' }); return true; }
          if (natDone[s.nat]) {
            ctx.emit({ kind: 'stage-skipped', hook, label: s.label, reason: `the connection's ${s.nat === 'dst' ? 'DNAT' : 'SNAT'} is already set up (nat chains see only the first packet, once)` });
            return true;
          }
        }
        ctx.emit({ kind: 'stage', hook, label: s.label, evaluator: x.ev.name });
        const out = x.ev.evaluate(s, state, ctx);
        if (out.kind === 'stolen') {
          stolen = true;
          ctx.emit({ kind: 'note', text: `${out.why}: the rest of ${hook} does not see it`, depth: 0 });
          return true;
        }
        if (out.kind === 'drop') { leaf.verdict = 'DROP'; ctx.emit({ kind: 'verdict', text: `DROP in ${hook} (${s.label}): the packet is discarded silently` }); return false; }
        if (out.kind === 'reject') {
          leaf.verdict = 'REJECT'; leaf.rejectWith = out.with;
          ctx.emit({ kind: 'verdict', text: `REJECT in ${hook} (${s.label}) with ${out.with}: the client is refused at once` });
          return false;
        }
        return true;
      },
    }));
    if ((hook === 'PREROUTING' || hook === 'OUTPUT') && state.ct === undefined) {
      withCt.push({
        priority: CONNTRACK_PRIORITY,
        run: () => {
          state.ct = { state: 'NEW', dnat: false, snat: false, origSrc: state.src, origDst: state.dst, origSport: state.srcPort, origDport: state.dport };
          ctx.emit({ kind: 'conntrack', text: 'conntrack: no entry for this tuple, a new connection (ctstate NEW); nat chains decide its NAT once' });
          return true;
        },
      });
    }
    withCt.sort((a, b) => a.priority - b.priority);
    for (const w of withCt) {
      if (!w.run()) return false;
      if (stolen) return true;
    }
    // The nat core installs a null binding when no nat chain did NAT at this hook.
    for (const x of here) if (x.s.nat !== undefined) natDone[x.s.nat] = true;
    return true;
  };

  if (packet.origin === 'external') {
    if (!runHook('PREROUTING')) return leaf;
    if (state.family === 'ipv4' && parseCIDR('127.0.0.0/8')?.contains(state.dst) === true && node.routeLocalnet !== true) {
      ctx.emit({ kind: 'routing', text: `routing: ${state.dst} is a loopback address arriving from outside: martian, dropped (route_localnet is off)` });
      leaf.verdict = 'DROP';
      return leaf;
    }
    if (local(state.dst)) {
      ctx.emit({ kind: 'routing', text: `routing: ${state.dst} is a local address -> INPUT (delivered to this node)` });
      const before = state.dst;
      if (!runHook('INPUT')) return leaf;
      leaf.delivery = 'local';
      if (state.dst !== before && !local(state.dst)) {
        // IPVS (LOCAL_IN) DNATed it to a real server elsewhere: ip_vs_nat_xmit sends it on through LOCAL_OUT.
        state.outInterface = packet.outInterface;
        ctx.emit({ kind: 'routing', text: `IPVS sends it to ${state.dst} (ip_vs_nat_xmit): through LOCAL_OUT and POSTROUTING, not FORWARD` });
        if (!runHook('OUTPUT', 'IPVS transmit')) return leaf;
        if (!runHook('POSTROUTING')) return leaf;
        leaf.delivery = 'forwarded';
      }
    } else {
      ctx.emit({ kind: 'routing', text: `routing: ${state.dst} is not a local address -> FORWARD (needs ip_forward=1)` });
      state.outInterface = packet.outInterface;
      if (!runHook('FORWARD')) return leaf;
      if (!runHook('POSTROUTING')) return leaf;
      leaf.delivery = 'forwarded';
    }
  } else {
    const dstLocal0 = local(state.dst);
    state.outInterface = dstLocal0 ? 'lo' : packet.outInterface;
    ctx.emit({ kind: 'routing', text: `routing (socket): ${state.dst} ${dstLocal0 ? 'is local: out via lo' : 'is not local: out via the route to it'}` });
    const before = state.dst;
    if (!runHook('OUTPUT')) return leaf;
    const dstLocal = local(state.dst);
    if (state.dst !== before) {
      state.outInterface = dstLocal ? 'lo' : packet.outInterface;
      ctx.emit({ kind: 'routing', text: `rerouting after DNAT: ${state.dst} ${dstLocal ? 'is local: via lo' : 'is not local: out via the route to it'}` });
    }
    if (!runHook('POSTROUTING')) return leaf;
    if (dstLocal) {
      state.inInterface = 'lo';
      if (!runHook('PREROUTING', 'received on lo (conntrack entry already attached)')) return leaf;
      if (!runHook('INPUT')) return leaf;
      leaf.delivery = 'local';
    } else {
      leaf.delivery = 'sent';
    }
  }
  const where = leaf.delivery === 'local' ? 'delivered to a local socket' : leaf.delivery === 'forwarded' ? 'forwarded' : 'sent out';
  const snat = leaf.snat ? (leaf.snat.kind === 'MASQUERADE' ? ', source masqueraded to the outgoing interface\'s address' : `, source NATed to ${leaf.snat.to ?? '?'}`) : '';
  ctx.emit({ kind: 'verdict', text: `ACCEPT: ${where} to ${state.dst}:${state.dport}${snat}` });
  return leaf;
}

export { formatTrace, formatProbability } from './format.js';
