/**
 * Thin, shared driver for the iptables tools: atomic restores, jump rules in built-in chains,
 * and removal of our chains. Every mode that writes iptables rules goes through this.
 */
import { KproxyError } from '../core/errors.js';
import type { Exec } from './exec.js';

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
   * On failure the error names the failing line with the lines around it.
   */
  async restore(text: string, options: { counters?: boolean } = {}): Promise<void> {
    const args = [...this.wait, '--noflush', ...(options.counters ? ['--counters'] : [])];
    const r = await this.opts.exec(`${this.bin}-restore`, args, { input: text });
    if (r.code === 0) return;
    const line = failedLine(r.stderr);
    throw new RestoreError(`${this.bin}-restore failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}${restoreContext(text, r.stderr)}`, line);
  }

  /** Dumps one table in iptables-save format. */
  async save(table: string): Promise<string> {
    const r = await this.opts.exec(`${this.bin}-save`, ['-t', table]);
    if (r.code !== 0) throw new KproxyError('KP_ERR_IPTABLES_SAVE', `${this.bin}-save -t ${table} failed (exit ${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
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

  /** Flushes and deletes those of `chains` that exist in `table`. Returns the ones removed. */
  async deleteChains(table: string, chains: readonly string[]): Promise<string[]> {
    const dump = await this.save(table);
    const existing = chains.filter((c) => dump.includes(`:${c} `));
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
export function committedBefore(text: string, line: number): string[] {
  const out: string[] = [];
  let table: string | undefined;
  for (const [i, l] of text.split('\n').entries()) {
    if (i + 1 >= line) break;
    if (l.startsWith('*')) table = l.slice(1);
    else if (l === 'COMMIT' && table !== undefined) out.push(table);
  }
  return out;
}

/** iptables-restore says "line N failed"; show that line with two lines of context. */
export function restoreContext(text: string, stderr: string): string {
  const n = failedLine(stderr);
  if (n === undefined) return '';
  const lines = text.split('\n');
  const from = Math.max(1, n - 2);
  const to = Math.min(lines.length, n + 2);
  const out: string[] = [];
  for (let i = from; i <= to; i++) out.push(`${i === n ? '>' : ' '} ${i}: ${lines[i - 1] ?? ''}`);
  return `\n${out.join('\n')}`;
}
