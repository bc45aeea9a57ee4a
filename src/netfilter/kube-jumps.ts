/**
 * Upstream kube-proxy installs its jumps from the built-in chains outside iptables-restore, so a
 * `--dry-run` restore input has none. To trace such a file, these rules are added (prepended, in
 * upstream's order, so the result reads like `iptables-save` on a node). Mirrors JUMP_RULES in
 * src/backends/iptables/render.ts (a test checks they agree).
 */
import { parseIptablesSave, type Ruleset } from './iptables-save.js';

/** [table, built-in chain, rule arguments], in the order upstream prepends them. */
export const KUBE_JUMPS: readonly (readonly [string, string, string])[] = [
  ['filter', 'INPUT', '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'],
  ['filter', 'FORWARD', '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'],
  ['filter', 'INPUT', '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'],
  ['filter', 'FORWARD', '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
  ['filter', 'OUTPUT', '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
  ['filter', 'FORWARD', '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'],
  ['filter', 'INPUT', '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'],
  ['filter', 'OUTPUT', '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'],
  ['filter', 'FORWARD', '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'],
  ['nat', 'OUTPUT', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
  ['nat', 'PREROUTING', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
  ['nat', 'POSTROUTING', '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'],
  ['filter', 'INPUT', '-j KUBE-FIREWALL'],
  ['filter', 'OUTPUT', '-j KUBE-FIREWALL'],
];

/** IPVS mode's jumps (IPVS_JUMP_RULES in src/backends/ipvs/render.ts; a test checks they agree). */
export const IPVS_KUBE_JUMPS: readonly (readonly [string, string, string])[] = [
  ['nat', 'OUTPUT', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
  ['nat', 'PREROUTING', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
  ['nat', 'POSTROUTING', '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'],
  ['filter', 'FORWARD', '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'],
  ['filter', 'INPUT', '-m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT'],
  ['filter', 'INPUT', '-m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL'],
  ['filter', 'FORWARD', '-m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL'],
  ['filter', 'INPUT', '-m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER'],
  ['filter', 'OUTPUT', '-m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER'],
];

/** True when some built-in chain already jumps into a KUBE- chain (a dump of a live node). */
function hasKubeJumps(rs: Ruleset): boolean {
  for (const t of rs.tables.values()) {
    for (const c of t.chains.values()) {
      if (c.builtin && c.rules.some((r) => r.target?.kind === 'jump' && r.target.chain.startsWith('KUBE-'))) return true;
    }
  }
  return false;
}

/**
 * If the ruleset has kube-proxy chains but no jumps into them (a --dry-run restore input),
 * returns it with upstream's jumps added, and a note saying so; otherwise returns it as is.
 */
export function withKubeProxyJumps(rs: Ruleset): { ruleset: Ruleset; note?: string } {
  const hasKube = [...rs.tables.values()].some((t) => t.chains.has('KUBE-SERVICES'));
  if (!hasKube || hasKubeJumps(rs)) return { ruleset: rs };
  const lines: string[] = [];
  const ipvs = rs.tables.get('filter')?.chains.has('KUBE-IPVS-FILTER') === true;
  for (const table of ['filter', 'nat']) {
    const t = rs.tables.get(table);
    if (!t) continue;
    lines.push(`*${table}`);
    for (const [tb, chain, args] of ipvs ? IPVS_KUBE_JUMPS : KUBE_JUMPS) {
      const target = /-j (\S+)$/.exec(args)?.[1] ?? '';
      if (tb === table && t.chains.has(target)) lines.push(`-I ${chain} ${args}`);
    }
    lines.push('COMMIT');
  }
  return {
    ruleset: parseIptablesSave(lines.join('\n'), rs),
    note: `no jumps from the built-in chains into KUBE- chains (a --dry-run restore input?): added kube-proxy's standard jump rules${ipvs ? ' of IPVS mode' : ''}`,
  };
}
