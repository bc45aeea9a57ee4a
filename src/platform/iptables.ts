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
    throw new KproxyError('KP_ERR_IPTABLES_RESTORE', `${this.bin}-restore failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}${restoreContext(text, r.stderr)}`);
  }

  /** Dumps one table in iptables-save format. */
  async save(table: string): Promise<string> {
    const r = await this.opts.exec(`${this.bin}-save`, ['-t', table]);
    if (r.code !== 0) throw new KproxyError('KP_ERR_IPTABLES_SAVE', `${this.bin}-save -t ${table} failed (exit ${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  private jumpArgs(chain: string, target: string, comment: string): string[] {
    return [chain, '-m', 'comment', '--comment', comment, '-j', target];
  }

  /** Makes sure `-A/-I <chain> -m comment --comment <comment> -j <target>` exists (upstream's EnsureRule). */
  async ensureJump(table: string, chain: string, target: string, comment: string, position: 'prepend' | 'append' = 'prepend'): Promise<void> {
    const rule = this.jumpArgs(chain, target, comment);
    const check = await this.opts.exec(this.bin, [...this.wait, '-t', table, '-C', ...rule]);
    if (check.code === 0) return;
    const add = await this.opts.exec(this.bin, [...this.wait, '-t', table, position === 'prepend' ? '-I' : '-A', ...rule]);
    if (add.code !== 0) {
      throw new KproxyError('KP_ERR_IPTABLES_JUMP', `cannot add jump from ${table}/${chain} to ${target}: ${add.stderr.trim()}`);
    }
  }

  /** Removes every copy of the jump rule; absent is fine. */
  async deleteJump(table: string, chain: string, target: string, comment: string): Promise<void> {
    const rule = this.jumpArgs(chain, target, comment);
    for (let i = 0; i < 16; i++) {
      const r = await this.opts.exec(this.bin, [...this.wait, '-t', table, '-D', ...rule]);
      if (r.code !== 0) return;
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

/** iptables-restore says "line N failed"; show that line with two lines of context. */
export function restoreContext(text: string, stderr: string): string {
  const m = /line (\d+) failed/.exec(stderr) ?? /Error occurred at line: (\d+)/.exec(stderr);
  if (!m?.[1]) return '';
  const n = Number(m[1]);
  const lines = text.split('\n');
  const from = Math.max(1, n - 2);
  const to = Math.min(lines.length, n + 2);
  const out: string[] = [];
  for (let i = from; i <= to; i++) out.push(`${i === n ? '>' : ' '} ${i}: ${lines[i - 1] ?? ''}`);
  return `\n${out.join('\n')}`;
}
