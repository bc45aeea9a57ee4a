/**
 * Thin, shared driver for the iptables tools: atomic restores, jump rules in built-in chains,
 * and removal of our chains. Every mode that writes iptables rules goes through this.
 */
import { KproxyError } from '../core/errors.js';
import { linesAround, linesOf, type Text } from '../core/text.js';
import { execLines, type Exec } from './exec.js';

export interface IptablesOptions {
  readonly exec: Exec;
  /** 'iptables' (default), or e.g. 'iptables-legacy'. */
  readonly binary?: string;
  /** Seconds to wait for the xtables lock. */
  readonly waitSeconds?: number;
}

export class Iptables {
  private readonly bin: string;
  private readonly wait: string[];

  constructor(private readonly opts: IptablesOptions) {
    this.bin = opts.binary ?? 'iptables';
    this.wait = ['-w', String(opts.waitSeconds ?? 5)];
  }

  /**
   * Runs `<bin>-restore --noflush` with the text; the kernel applies each table atomically.
   * On failure the error names the failing line with the lines around it (a ChunkedText is made
   * again for that).
   */
  async restore(text: Text, options: { counters?: boolean } = {}): Promise<void> {
    const args = [...this.wait, '--noflush', ...(options.counters ? ['--counters'] : [])];
    const r = await this.opts.exec(`${this.bin}-restore`, args, { input: text });
    if (r.code === 0) return;
    const line = failedLine(r.stderr);
    throw new RestoreError(`${this.bin}-restore failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}${restoreContext(text, r.stderr)}`, line);
  }

  #nfTables: Promise<boolean> | undefined;
  /**
   * Whether the binary is the nf_tables backend (`iptables v1.8.9 (nf_tables)`), asked once.
   * Anything else (legacy, or no answer) counts as legacy.
   */
  nfTables(): Promise<boolean> {
    this.#nfTables ??= this.opts.exec(this.bin, ['--version']).then((r) => r.code === 0 && /\(nf_tables\)/.test(r.stdout), () => false);
    return this.#nfTables;
  }

  /** Dumps one table in iptables-save format. */
  async save(table: string): Promise<string> {
    const lines: string[] = [];
    await this.saveLines(table, (l) => lines.push(l));
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  /** Dumps one table line by line (a whole table is tens of MB at 10,000 services: never held whole). */
  async saveLines(table: string, onLine: (line: string) => void): Promise<void> {
    const r = await execLines(this.opts.exec, `${this.bin}-save`, ['-t', table], onLine);
    if (r.code !== 0) throw new KproxyError('KP_ERR_IPTABLES_SAVE', `${this.bin}-save -t ${table} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }

  private jumpArgs(target: string, comment: string): string[] {
    return ['-m', 'comment', '--comment', comment, '-j', target];
  }

  /** Makes sure `-A/-I <chain> -m comment --comment <comment> -j <target>` exists. */
  ensureJump(table: string, chain: string, target: string, comment: string, position: 'prepend' | 'append' = 'prepend'): Promise<void> {
    return this.ensureRule(table, chain, this.jumpArgs(target, comment), position);
  }

  /** Removes every copy of the jump rule; absent is fine. */
  deleteJump(table: string, chain: string, target: string, comment: string): Promise<void> {
    return this.deleteRule(table, chain, this.jumpArgs(target, comment));
  }

  /** Whether `-A <chain> <args>` exists in table (iptables -C). */
  async hasRule(table: string, chain: string, args: readonly string[]): Promise<boolean> {
    const r = await this.opts.exec(this.bin, [...this.wait, '-t', table, '-C', chain, ...args]);
    return r.code === 0;
  }

  /** Adds the rule unless it exists (upstream's EnsureRule). */
  async ensureRule(table: string, chain: string, args: readonly string[], position: 'prepend' | 'append' = 'prepend'): Promise<void> {
    if (await this.hasRule(table, chain, args)) return;
    const r = await this.opts.exec(this.bin, [...this.wait, '-t', table, position === 'prepend' ? '-I' : '-A', chain, ...args]);
    if (r.code !== 0) throw new KproxyError('KP_ERR_IPTABLES_RULE', `cannot add rule to ${table}/${chain} (${args.join(' ')}): ${r.stderr.trim()}`);
  }

  /** Removes every copy of the rule; absent is fine. */
  async deleteRule(table: string, chain: string, args: readonly string[]): Promise<void> {
    for (let i = 0; i < 16; i++) {
      const r = await this.opts.exec(this.bin, [...this.wait, '-t', table, '-D', chain, ...args]);
      if (r.code !== 0) return;
    }
  }

  async chainExists(table: string, chain: string): Promise<boolean> {
    const r = await this.opts.exec(this.bin, [...this.wait, '-t', table, '-S', chain]);
    return r.code === 0;
  }

  /** Creates the chain unless it exists (upstream's EnsureChain). */
  async ensureChain(table: string, chain: string): Promise<void> {
    if (await this.chainExists(table, chain)) return;
    const r = await this.opts.exec(this.bin, [...this.wait, '-t', table, '-N', chain]);
    if (r.code !== 0 && !(await this.chainExists(table, chain))) {
      throw new KproxyError('KP_ERR_IPTABLES_CHAIN', `cannot create chain ${table}/${chain}: ${r.stderr.trim()}`);
    }
  }

  /** The chains `table` declares (from its dump), in order. */
  async chains(table: string): Promise<string[]> {
    const out: string[] = [];
    await this.saveLines(table, (l) => {
      const space = l.indexOf(' ');
      if (l.startsWith(':') && space > 0) out.push(l.slice(1, space));
    });
    return out;
  }

  /** Flushes and deletes those of `chains` that exist in `table`. Returns the ones removed. */
  async deleteChains(table: string, chains: readonly string[]): Promise<string[]> {
    const have = new Set(await this.chains(table));
    const existing = chains.filter((c) => have.has(c));
    if (existing.length === 0) return [];
    const lines = [`*${table}`, ...existing.map((c) => `:${c} - [0:0]`), ...existing.map((c) => `-X ${c}`), 'COMMIT', ''];
    await this.restore(lines.join('\n'));
    return existing;
  }
}

/** A failed restore; `line` is the input line the tool named, when it named one. */
export class RestoreError extends KproxyError {
  constructor(message: string, readonly line: number | undefined) {
    super('KP_ERR_IPTABLES_RESTORE', message);
  }
}

function failedLine(stderr: string): number | undefined {
  const m = /line (\d+) failed/.exec(stderr) ?? /Error occurred at line: (\d+)/.exec(stderr);
  return m?.[1] ? Number(m[1]) : undefined;
}

/**
 * The tables of a restore input that were committed before `line` failed: iptables-restore
 * commits each table at its COMMIT, so a failure in a later table leaves earlier ones applied.
 */
export function committedBefore(text: Text, line: number): string[] {
  const out: string[] = [];
  let table: string | undefined;
  let n = 0;
  for (const l of linesOf(text)) {
    if (++n >= line) break;
    if (l.startsWith('*')) table = l.slice(1);
    else if (l === 'COMMIT' && table !== undefined) out.push(table);
  }
  return out;
}

/** iptables-restore says "line N failed"; show that line with two lines of context. */
export function restoreContext(text: Text, stderr: string): string {
  const n = failedLine(stderr);
  if (n === undefined) return '';
  return `\n${linesAround(text, n, 2).map(([i, l]) => `${i === n ? '>' : ' '} ${i}: ${l}`).join('\n')}`;
}

/** Chains kubelet (and kube-proxy images) create to say which iptables backend a node uses. */
const BACKEND_HINT_CHAINS = [':KUBE-IPTABLES-HINT ', ':KUBE-KUBELET-CANARY '];

export interface IptablesBackendChoice {
  /** The command prefix: 'iptables-legacy', 'iptables-nft', or 'iptables' (the system's default). */
  readonly binary: string;
  readonly reason: string;
}

/**
 * Which iptables backend the node already uses, as upstream's kube-proxy image decides it (its
 * iptables-wrapper): the backend whose mangle table holds kubelet's hint chain
 * (KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY); else the one with more rules, legacy only when it
 * has strictly more; else the system's default `iptables`. Mixing backends on one node breaks
 * both, and at 10,000 services legacy restores in seconds where nf_tables takes many minutes.
 */
export async function detectIptablesBackend(exec: Exec): Promise<IptablesBackendChoice> {
  const dump = async (bin: string, args: readonly string[]): Promise<string | undefined> => {
    const r = await exec(`${bin}-save`, args);
    return r.code === 0 ? r.stdout : undefined;
  };
  const legacyMangle = await dump('iptables-legacy', ['-t', 'mangle']);
  const nftMangle = await dump('iptables-nft', ['-t', 'mangle']);
  if (legacyMangle === undefined && nftMangle === undefined) return { binary: 'iptables', reason: 'neither iptables-legacy nor iptables-nft is installed; using the default iptables' };
  const hinted = (d: string | undefined): boolean => d !== undefined && BACKEND_HINT_CHAINS.some((c) => d.includes(c));
  if (hinted(legacyMangle) && !hinted(nftMangle)) return { binary: 'iptables-legacy', reason: 'kubelet hint chain found in iptables-legacy' };
  if (hinted(nftMangle)) return { binary: 'iptables-nft', reason: 'kubelet hint chain found in iptables-nft' };
  // Every table's rules, counted line by line (the dump is tens of MB at 10,000 services).
  const rules = async (bin: string): Promise<number> => {
    let n = 0;
    const r = await execLines(exec, `${bin}-save`, [], (l) => {
      if (l.startsWith('-A ')) n++;
    });
    return r.code === 0 ? n : 0;
  };
  const legacy = legacyMangle === undefined ? 0 : await rules('iptables-legacy');
  const nft = nftMangle === undefined ? 0 : await rules('iptables-nft');
  if (legacyMangle !== undefined && legacy > nft) return { binary: 'iptables-legacy', reason: `iptables-legacy holds more rules (${legacy} against ${nft})` };
  if (nftMangle !== undefined && nft > 0) return { binary: 'iptables-nft', reason: `iptables-nft holds rules (${nft} against ${legacy})` };
  return { binary: 'iptables', reason: 'no rules and no hint in either backend; using the default iptables' };
}
