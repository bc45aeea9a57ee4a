/** Running external tools (iptables-restore, nft, ipset, ...), with a fake for tests. */
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { errorMessage } from '../core/errors.js';
import { LineSplitter, linesOf, textOf, type Text } from '../core/text.js';

export interface ExecResult {
  /** Exit code; 127 when the command does not exist. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ExecOptions {
  /** Written to the tool's stdin, which is then closed; a ChunkedText chunk by chunk. */
  readonly input?: Text;
  /**
   * Receives stdout line by line as it comes, instead of in ExecResult.stdout (''): for dumps of
   * a whole ruleset (tens of MB at 10,000 services), of which the caller keeps a few names. An
   * Exec may ignore it and return stdout whole; execLines handles both.
   */
  readonly stdoutLines?: (line: string) => void;
}

export type Exec = (cmd: string, args: readonly string[], options?: ExecOptions) => Promise<ExecResult>;

/** Runs a tool through an Exec, with its stdout line by line to onLine (see ExecOptions.stdoutLines). */
export async function execLines(exec: Exec, cmd: string, args: readonly string[], onLine: (line: string) => void): Promise<ExecResult> {
  const r = await exec(cmd, args, { stdoutLines: onLine });
  if (r.stdout === '') return r;
  const lines = [...linesOf(r.stdout)];
  if (lines.at(-1) === '') lines.pop();
  for (const l of lines) onLine(l);
  return { ...r, stdout: '' };
}

/**
 * Writes a text to a stream: a string at once, a ChunkedText chunk by chunk as the stream takes
 * them (so the whole text never exists at once). Resolves once the stream has written it all
 * out (an asynchronous pipe may still hold it after write() returns: a process that exits then
 * loses the end), or when the stream fails or closes (a tool may exit before reading all its
 * input). Rejects only when making the text fails, before the rest of it is written.
 */
export async function writeText(stream: Writable, text: Text): Promise<void> {
  let written: Promise<void> = Promise.resolve();
  for (const chunk of typeof text === 'string' ? (text === '' ? [] : [text]) : text) {
    if (stream.destroyed || stream.writableEnded) return;
    let full = false;
    written = new Promise<void>((resolve) => {
      full = !stream.write(chunk, () => resolve());
    });
    if (full && !stream.destroyed) await drained(stream);
  }
  await written;
}

/** Resolves on 'drain', or when the stream closes or fails. */
function drained(stream: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

/**
 * Runs a tool: `input` to its stdin (a ChunkedText chunk by chunk), stdout and stderr collected.
 * With `timeoutMs`, the tool is killed (SIGKILL, by its pid) after that long: code 124. If making
 * the input fails, the tool is killed before its stdin is closed (a tool that saw the end of a
 * truncated input could apply part of it): code 1, and stderr says why.
 */
export function runTool(cmd: string, args: readonly string[], options: ExecOptions & { timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const lines = options.stdoutLines === undefined ? undefined : new LineSplitter(options.stdoutLines);
    if (lines === undefined) child.stdout.on('data', (b: Buffer) => out.push(b));
    else {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (s: string) => lines.push(s));
    }
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let settled = false;
    let timedOut = false;
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    const finish = (r: ExecResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      finish({ code: e.code === 'ENOENT' ? 127 : 126, stdout: '', stderr: `${cmd}: ${e.code === 'ENOENT' ? 'command not found' : e.message}` });
    });
    child.stdin.on('error', () => { /* the tool may exit before reading all input */ });
    const fed = writeText(child.stdin, options.input ?? '').then(
      () => {
        child.stdin.end();
        return undefined;
      },
      (e: unknown) => {
        child.kill('SIGKILL');
        child.stdin.destroy();
        return `making the input failed: ${errorMessage(e)}`;
      },
    );
    child.on('close', (code) => {
      lines?.end();
      void fed.then((failure) => {
        const stderr = Buffer.concat(err).toString();
        finish({
          code: timedOut ? 124 : failure !== undefined ? 1 : code ?? 1,
          stdout: Buffer.concat(out).toString(),
          stderr: timedOut ? `${stderr}${cmd}: killed after ${options.timeoutMs}ms` : failure !== undefined ? `${stderr}${cmd}: ${failure}` : stderr,
        });
      });
    });
  });
}

export const realExec: Exec = (cmd, args, options) => runTool(cmd, args, options);

export interface ExecCall {
  readonly cmd: string;
  readonly args: readonly string[];
  /** The input as one string (a ChunkedText joined). */
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
    const call: ExecCall = { cmd, args: [...args], input: options?.input === undefined ? undefined : textOf(options.input) };
    this.calls.push(call);
    const r = this.responses.find((x) => x.match(call));
    return Promise.resolve(r ? r.result : { code: 0, stdout: '', stderr: '' });
  };
}
