/**
 * `nft -j list ruleset` (libnftables JSON) → a typed ruleset for the tracer: tables by family and
 * name, their chains (base chains with type/hook/priority/policy), rules (expression lists kept as
 * JSON, with an nft-like text rendered for the trace), and sets/maps with their elements.
 * Pure: no node: imports.
 */

/** A JSON value as libnftables emits it. */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json };
export type JsonObject = { readonly [k: string]: Json };

export interface NftRule {
  readonly handle: number | undefined;
  readonly expr: readonly Json[];
  readonly text: string;
  readonly comment?: string;
}

export interface NftChain {
  readonly name: string;
  readonly type?: string;
  readonly hook?: string;
  readonly prio?: number;
  readonly policy?: string;
  readonly rules: NftRule[];
}

export interface NftSetElem {
  /** The key (a literal, `{prefix}`, `{range}` or `{concat}`), with any `{elem: {val}}` wrapper removed. */
  readonly key: Json;
  /** Map data (a verdict object for vmaps). */
  readonly data?: Json;
}

export interface NftSet {
  readonly name: string;
  readonly kind: 'set' | 'map';
  readonly type: readonly string[];
  readonly map?: string;
  readonly flags: readonly string[];
  readonly elems: NftSetElem[];
}

export interface NftTable {
  readonly family: string;
  readonly name: string;
  readonly chains: Map<string, NftChain>;
  readonly sets: Map<string, NftSet>;
}

export interface NftRuleset {
  /** Keyed by `${family} ${name}`, in dump order. */
  readonly tables: Map<string, NftTable>;
  /** Objects that were skipped (unknown kind or malformed), with a reason. */
  readonly skipped: string[];
}

export class NftParseError extends Error {}

export const isObject = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: Json | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: Json | undefined): number | undefined => (typeof v === 'number' ? v : undefined);
const strList = (v: Json | undefined): string[] => (typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/** Whether a text looks like `nft -j list ruleset` output (rather than an iptables dump). */
export function looksLikeNftJson(text: string): boolean {
  const t = text.trimStart();
  return t.startsWith('{') && /"nftables"\s*:/.test(t.slice(0, 200));
}

export function parseNftJson(text: string): NftRuleset {
  let doc: Json;
  try {
    doc = JSON.parse(text) as Json;
  } catch (e) {
    throw new NftParseError(`not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  const list = isObject(doc) ? doc['nftables'] : undefined;
  if (!Array.isArray(list)) throw new NftParseError('not an `nft -j list ruleset` document: no "nftables" array');
  const rs: NftRuleset = { tables: new Map(), skipped: [] };
  const table = (family: string, name: string): NftTable => {
    const key = `${family} ${name}`;
    let t = rs.tables.get(key);
    if (!t) { t = { family, name, chains: new Map(), sets: new Map() }; rs.tables.set(key, t); }
    return t;
  };
  for (const item of list as readonly Json[]) {
    if (!isObject(item)) { rs.skipped.push('a non-object entry'); continue; }
    const [kind] = Object.keys(item);
    const o = kind !== undefined ? item[kind] : undefined;
    if (kind === 'metainfo') continue;
    if (!isObject(o)) { rs.skipped.push(`${kind ?? '?'}: not an object`); continue; }
    const family = str(o['family']);
    const tname = kind === 'table' ? str(o['name']) : str(o['table']);
    if (family === undefined || tname === undefined) { rs.skipped.push(`${kind ?? '?'}: no family or table`); continue; }
    switch (kind) {
      case 'table': table(family, tname); break;
      case 'chain': {
        const name = str(o['name']);
        if (name === undefined) { rs.skipped.push('chain without a name'); break; }
        const t = table(family, tname);
        const type = str(o['type']); const hook = str(o['hook']); const prio = num(o['prio']); const policy = str(o['policy']);
        const prev = t.chains.get(name);
        t.chains.set(name, {
          name, rules: prev?.rules ?? [],
          ...(type !== undefined ? { type } : {}), ...(hook !== undefined ? { hook } : {}),
          ...(prio !== undefined ? { prio } : {}), ...(policy !== undefined ? { policy } : {}),
        });
        break;
      }
      case 'rule': {
        const chainName = str(o['chain']);
        const expr = o['expr'];
        if (chainName === undefined || !Array.isArray(expr)) { rs.skipped.push(`rule in ${tname}: no chain or expr`); break; }
        const t = table(family, tname);
        let c = t.chains.get(chainName);
        if (!c) { c = { name: chainName, rules: [] }; t.chains.set(chainName, c); }
        const comment = str(o['comment']);
        const exprs = expr as readonly Json[];
        c.rules.push({ handle: num(o['handle']), expr: exprs, text: ruleText(exprs) + (comment !== undefined ? ` comment ${JSON.stringify(comment)}` : ''), ...(comment !== undefined ? { comment } : {}) });
        break;
      }
      case 'set': case 'map': {
        const name = str(o['name']);
        if (name === undefined) { rs.skipped.push(`${kind} without a name`); break; }
        const elems: NftSetElem[] = [];
        const raw = o['elem'];
        if (Array.isArray(raw)) {
          for (const e of raw as readonly Json[]) {
            if (kind === 'map' && Array.isArray(e) && e.length === 2) elems.push({ key: unwrapElem(e[0] ?? null), data: e[1] ?? null });
            else elems.push({ key: unwrapElem(e) });
          }
        }
        const mapType = str(o['map']);
        table(family, tname).sets.set(name, {
          name, kind, type: strList(o['type']), flags: strList(o['flags']), elems,
          ...(mapType !== undefined ? { map: mapType } : {}),
        });
        break;
      }
      default: rs.skipped.push(`${kind ?? '?'} objects are not used by the tracer`);
    }
  }
  return rs;
}

/** `{elem: {val: X, comment/expires/...}}` → X. */
export function unwrapElem(e: Json): Json {
  if (isObject(e) && isObject(e['elem'])) return e['elem']['val'] ?? null;
  return e;
}

// ---- nft-like text of a rule -------------------------------------------------------------

export function exprText(e: Json | undefined): string {
  if (e === undefined || e === null) return '';
  if (typeof e === 'string' || typeof e === 'number' || typeof e === 'boolean') return String(e);
  if (Array.isArray(e)) return `{ ${e.map((x) => exprText(x)).join(', ')} }`;
  const o = e as JsonObject;
  const [k] = Object.keys(o);
  if (k === undefined) return '{}';
  const v = o[k];
  const vo = isObject(v) ? v : {};
  switch (k) {
    case 'payload': return vo['base'] !== undefined ? `@${exprText(vo['base'])},${exprText(vo['offset'])},${exprText(vo['len'])}` : `${exprText(vo['protocol'])} ${exprText(vo['field'])}`;
    case 'meta': return `meta ${exprText(vo['key'])}`;
    case 'ct': return `ct ${vo['dir'] !== undefined ? `${exprText(vo['dir'])} ` : ''}${exprText(vo['key'])}`;
    case 'fib': return `fib ${strList(vo['flags']).join(' . ')} ${exprText(vo['result'])}`;
    case 'numgen': return `numgen ${exprText(vo['mode'])} mod ${exprText(vo['mod'])}${num(vo['offset']) ? ` offset ${exprText(vo['offset'])}` : ''}`;
    case 'concat': return Array.isArray(v) ? v.map((x) => exprText(x)).join(' . ') : '?';
    case 'prefix': return `${exprText(vo['addr'])}/${exprText(vo['len'])}`;
    case 'range': return Array.isArray(v) ? `${exprText(v[0])}-${exprText(v[1])}` : '?';
    case 'set': return Array.isArray(v) ? `{ ${v.map((x) => (Array.isArray(x) ? `${exprText(x[0])} : ${exprText(x[1])}` : exprText(unwrapElem(x)))).join(', ')} }` : exprText(v);
    case '&': case '|': case '^': case '<<': case '>>': return Array.isArray(v) ? `${exprText(v[0])} ${({ '&': 'and', '|': 'or', '^': 'xor' } as Record<string, string>)[k] ?? k} ${exprText(v[1])}` : '?';
    case 'jump': case 'goto': return `${k} ${exprText(vo['target'])}`;
    case 'elem': return exprText(vo['val']);
    default: return `${k}${v === null ? '' : ` ${JSON.stringify(v)}`}`;
  }
}

function stmtText(s: Json): string {
  if (!isObject(s)) return JSON.stringify(s);
  const [k] = Object.keys(s);
  if (k === undefined) return '';
  const v = s[k];
  const vo = isObject(v) ? v : {};
  const hex = (x: Json | undefined): string => (typeof x === 'number' ? `0x${x.toString(16).padStart(8, '0')}` : exprText(x));
  const markText = (x: Json | undefined): string => {
    if (isObject(x)) {
      const [op] = Object.keys(x);
      const a = op !== undefined ? x[op] : undefined;
      if (op !== undefined && Array.isArray(a) && ['&', '|', '^'].includes(op)) return `${exprText(a[0])} ${({ '&': 'and', '|': 'or', '^': 'xor' } as Record<string, string>)[op] ?? op} ${hex(a[1])}`;
    }
    return typeof x === 'number' ? hex(x) : exprText(x);
  };
  switch (k) {
    case 'match': {
      const op = str(vo['op']) ?? '==';
      const left = vo['left'];
      const l = isObject(left) && '&' in left && Array.isArray(left['&']) ? `${exprText(left['&'][0])} and ${hex(left['&'][1])}` : exprText(left);
      const right = vo['right'];
      const r = typeof right === 'number' && isObject(left) && ('&' in left || (isObject(left['meta']) && left['meta']['key'] === 'mark')) ? (right === 0 ? '0' : hex(right)) : exprText(right);
      const binop = isObject(left) && ['&', '|', '^'].some((b) => b in left);
      return (op === '==' && !binop) || op === 'in' ? `${l} ${r}` : `${l} ${op} ${r}`;
    }
    case 'vmap': return `${exprText(vo['key'])} vmap ${exprText(vo['data'])}`;
    case 'map': return `${exprText(vo['key'])} map ${exprText(vo['data'])}`;
    case 'jump': case 'goto': return `${k} ${exprText(vo['target'])}`;
    case 'accept': case 'drop': case 'continue': case 'return': return k;
    case 'reject': return v === null ? 'reject' : `reject with ${exprText(vo['type'])} ${exprText(vo['expr'])}`.trimEnd();
    case 'counter': return 'counter';
    case 'mangle': return `${exprText(vo['key'])} set ${markText(vo['value'])}`.replace(/^meta mark set meta mark/, 'meta mark set meta mark');
    case 'dnat': case 'snat': {
      const a = exprText(vo['addr']);
      return `${k} to ${vo['port'] !== undefined && a.includes(':') ? `[${a}]` : a}${vo['port'] !== undefined ? `:${exprText(vo['port'])}` : ''}`;
    }
    case 'masquerade': case 'redirect': return `${k}${v !== null && vo['flags'] !== undefined ? ` ${strList(vo['flags']).join(',')}` : ''}`;
    case 'set': return `${exprText(vo['op'])} ${exprText(vo['set'])} { ${exprText(vo['elem'])} }`;
    case 'log': return 'log';
    case 'notrack': return 'notrack';
    default: return `${k}${v === null ? '' : ` ${JSON.stringify(v)}`}`;
  }
}

export function ruleText(expr: readonly Json[]): string {
  return expr.map(stmtText).filter((x) => x !== '').join(' ');
}

/** Tables of both rulesets (a later table of the same family and name replaces the earlier one). */
export function mergeNftRulesets(a: NftRuleset | undefined, b: NftRuleset): NftRuleset {
  if (!a) return b;
  return { tables: new Map([...a.tables, ...b.tables]), skipped: [...a.skipped, ...b.skipped] };
}

/** The ruleset without the tables named (`${family} ${name}`). */
export function withoutTables(rs: NftRuleset, keys: readonly string[]): NftRuleset {
  return { tables: new Map([...rs.tables].filter(([k]) => !keys.includes(k))), skipped: rs.skipped };
}
