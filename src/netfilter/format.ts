/**
 * The human form of a trace: hook by hook, rule by rule (indented by jump depth), the common
 * part once, then each possible path from where they split, then a summary of the choice set.
 */
import type { TraceEvent, TraceOutcome, TraceResult } from './trace.js';

/** "33.33% (1/3)": a percentage, plus a small fraction when the value is close to one. */
export function formatProbability(p: number): string {
  const pct = `${(p * 100).toFixed(2)}%`;
  for (let d = 1; d <= 64; d++) {
    const n = Math.round(p * d);
    if (n > 0 && Math.abs(p - n / d) < 1e-6) return d === 1 ? pct : `${pct} (${n}/${d})`;
  }
  return pct;
}

function renderEvents(events: readonly TraceEvent[], out: string[]): void {
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    if (!e) continue;
    const ind = (depth: number): string => '    ' + '  '.repeat(depth);
    switch (e.kind) {
      case 'hook': out.push(''); out.push(`${e.hook}${e.note !== undefined ? `  (${e.note})` : ''}`); break;
      case 'stage': {
        const next = events[i + 1];
        const who = e.evaluator === 'iptables' ? '' : ` [${e.evaluator}]`;
        if (next?.kind === 'policy' && next.depth === 0 && next.chain === e.hook) {
          out.push(`  ${e.label}/${e.hook}${who}: no rule matched, policy ${next.policy}`);
          i++;
        } else out.push(`  ${e.label}/${e.hook}${who}`);
        break;
      }
      case 'stage-skipped': out.push(`  ${e.label}/${e.hook}: skipped, ${e.reason}`); break;
      case 'conntrack': out.push(`  ${e.text}`); break;
      case 'rule': out.push(`${ind(e.depth)}#${e.index} ${e.text}${e.effect !== undefined ? `\n${ind(e.depth)}   => ${e.effect}` : ''}`); break;
      case 'branch': {
        const next = events[i + 1];
        if (e.matched && next?.kind === 'rule' && next.chain === e.chain && next.index === e.index && next.depth === e.depth) {
          out.push(`${ind(e.depth)}#${e.index} ${e.text}\n${ind(e.depth)}   => matched: ${e.reason}${e.probability !== undefined ? ` (p=${e.probability.toFixed(4)})` : ''}${next.effect !== undefined ? `; ${next.effect}` : ''}`);
          i++;
          break;
        }
        out.push(`${ind(e.depth)}#${e.index} ${e.text}\n${ind(e.depth)}   => ${e.matched ? 'matched' : 'not matched'}: ${e.reason}${e.probability !== undefined ? ` (p=${e.probability.toFixed(4)})` : ''}`);
        break;
      }
      case 'return': out.push(e.how === 'RETURN' ? `${ind(e.depth)}<- RETURN from ${e.chain}` : `${ind(e.depth)}<- end of ${e.chain}, back to the calling chain`); break;
      case 'policy': out.push(`${ind(e.depth)}end of ${e.table}/${e.chain}: policy ${e.policy}`); break;
      case 'note': out.push(`${ind(e.depth)}note: ${e.text}`); break;
      case 'routing': out.push(`  ${e.text}`); break;
      case 'verdict': out.push(`  => ${e.text}`); break;
    }
  }
}

function describeOutcome(o: TraceOutcome): string {
  const parts = [o.verdict === 'REJECT' ? `REJECT (${o.rejectWith ?? ''})` : o.verdict];
  if (o.verdict === 'ACCEPT') {
    parts.push(`${o.delivery === 'local' ? 'delivered locally to' : o.delivery === 'forwarded' ? 'forwarded to' : 'sent to'} ${o.destination.ip}:${o.destination.port}`);
    parts.push(o.snat ? (o.snat.kind === 'MASQUERADE' ? `masqueraded${o.snat.randomFully ? ' (--random-fully)' : ''}` : `SNAT to ${o.snat.to ?? '?'}`) : 'client source address kept');
  }
  if (o.mark !== 0) parts.push(`mark 0x${o.mark.toString(16)}`);
  return parts.join(', ');
}

function describeAssumptions(o: TraceOutcome): string {
  const seen = o.assumptions.filter((a) => a.seen);
  if (o.assumptions.length === 0) return '';
  if (seen.length === 0) return 'client in no recent list (first connection, or its affinity expired)';
  return seen.map((a) => `client ${a.address} is in recent list ${a.list}`).join(' and ');
}

export function formatTrace(r: TraceResult): string {
  const out: string[] = [];
  const p = r.packet;
  out.push(`trace: ${p.protocol} ${p.src}${p.srcPort !== undefined ? `:${p.srcPort}` : ''} -> ${p.dst}:${p.dport}`);
  out.push(`  origin: ${p.origin === 'external' ? `arriving from outside the node${p.inInterface !== undefined ? ` on ${p.inInterface}` : ''}` : 'generated on this node'}`);
  out.push(`  local addresses: ${[...r.localAddresses, '127.0.0.0/8'].join(', ')}`);
  out.push('  the first packet of a new connection (conntrack NEW): only it goes through the nat chains;');
  out.push('  later packets of the connection reuse its NAT decision.');
  for (const n of r.notes) out.push(`  note: ${n}`);
  renderEvents(r.trunk, out);
  const many = r.outcomes.length > 1;
  if (many) {
    out.push('');
    out.push(`the walk splits here into ${r.outcomes.length} paths:`);
  }
  r.outcomes.forEach((o, k) => {
    if (many) {
      out.push('');
      const a = describeAssumptions(o);
      out.push(`=== path ${k + 1} of ${r.outcomes.length}: probability ${formatProbability(o.probability)}${a !== '' ? `, if ${a}` : ''} ===`);
    }
    const head = o.events[0];
    const lastStage = [...r.trunk].reverse().find((e) => e.kind === 'stage');
    if ((head?.kind === 'rule' || head?.kind === 'branch') && lastStage?.kind === 'stage') out.push(`  (continuing in ${lastStage.label}/${lastStage.hook}, chain ${head.chain})`);
    renderEvents(o.events, out);
  });
  out.push('');
  out.push('summary:');
  const groups = new Map<string, TraceOutcome[]>();
  for (const o of r.outcomes) {
    const key = describeAssumptions(o);
    groups.set(key, [...(groups.get(key) ?? []), o]);
  }
  for (const [key, list] of groups) {
    if (key !== '') out.push(`  if ${key}:`);
    for (const o of list) out.push(`  ${key !== '' ? '  ' : ''}${formatProbability(o.probability).padEnd(15)} ${describeOutcome(o)}`);
  }
  if (r.truncated) out.push('  (more paths than the tracer explores; the list is incomplete)');
  return out.join('\n') + '\n';
}
