/** Running external tools (iptables-restore, nft, ipset, ...), with a fake for tests. */
import { spawn } from 'node:child_process';

export interface ExecResult {
  /** Exit code; 127 when the command does not exist. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export type Exec = (cmd: string, args: readonly string[], options?: { input?: string }) => Promise<ExecResult>;

export const realExec: Exec = (cmd, args, options) =>
  new Promise((resolve) => {
    const child = spawn(cmd, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let settled = false;
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      resolve({ code: e.code === 'ENOENT' ? 127 : 126, stdout: '', stderr: `${cmd}: ${e.code === 'ENOENT' ? 'command not found' : e.message}` });
    });
    child.on('close', (code) => {
      if (settled) return;
      settled = true;
      resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.on('error', () => { /* the tool may exit before reading all input */ });
    child.stdin.end(options?.input ?? '');
  });

export interface ExecCall {
  readonly cmd: string;
  readonly args: readonly string[];
  readonly input: string | undefined;
}

/** Records calls; answers with the first matching scripted response, else success. */
export class FakeExec {
  readonly calls: ExecCall[] = [];
  private readonly responses: { match: (c: ExecCall) => boolean; result: ExecResult }[] = [];

  respond(match: (c: ExecCall) => boolean, result: Partial<ExecResult>): void {
    this.responses.push({ match, result: { code: 0, stdout: '', stderr: '', ...result } });
  }

  readonly exec: Exec = (cmd, args, options) => {
    const call: ExecCall = { cmd, args: [...args], input: options?.input };
    this.calls.push(call);
    const r = this.responses.find((x) => x.match(call));
    return Promise.resolve(r ? r.result : { code: 0, stdout: '', stderr: '' });
  };
}
