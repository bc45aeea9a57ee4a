/**
 * A node:test reporter that prints one JSON line per finished test, for the host side of the
 * VM tests (test/vm/ipvs-vm.test.ts), which turns each line back into a host subtest:
 *   {"path":["file.guest.js","suite","test"],"ok":true,"skip":false,"durationMs":12.3,"error":"..."}
 * Used as `node --test --test-reporter=./dist/test/helpers/vm-reporter.js ...`.
 */
import { basename } from 'node:path';

export interface GuestTestResult {
  /** The file's base name, then each enclosing test's name, then the test's own. */
  readonly path: readonly string[];
  readonly ok: boolean;
  readonly skip: boolean;
  readonly durationMs: number;
  readonly error?: string;
  /** The test's t.diagnostic() lines. */
  readonly diagnostics?: readonly string[];
}

interface TestEventData {
  name: string;
  nesting: number;
  file?: string;
  skip?: boolean | string;
  todo?: boolean | string;
  details?: { duration_ms?: number; error?: unknown };
  message?: string;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // The runner wraps a test's failure: the cause is the test's own error.
  const inner = (err as Error & { cause?: unknown }).cause;
  const e = inner instanceof Error ? inner : err;
  return (e.stack ?? e.message).slice(0, 4000);
}

export default async function* vmReporter(source: AsyncIterable<{ type: string; data: TestEventData }>): AsyncGenerator<string> {
  // Names of the tests started and not yet finished, by file: the path of a nested test.
  const stacks = new Map<string, string[]>();
  // The last finished test is held back: its t.diagnostic() lines follow its result event.
  let held: { file: string; nesting: number; result: GuestTestResult & { diagnostics: string[] } } | undefined;
  const flush = (): string => {
    if (!held) return '';
    const { diagnostics, ...rest } = held.result;
    held = undefined;
    return `${JSON.stringify(diagnostics.length > 0 ? { ...rest, diagnostics } : rest)}\n`;
  };
  for await (const ev of source) {
    const file = ev.data?.file ?? '';
    if (ev.type === 'test:diagnostic' && held && held.file === file && held.nesting === ev.data.nesting) {
      held.result.diagnostics.push(String(ev.data.message ?? ''));
      continue;
    }
    const out = flush();
    if (out) yield out;
    const stack = stacks.get(file) ?? [];
    stacks.set(file, stack);
    if (ev.type === 'test:start') {
      stack.length = ev.data.nesting;
      stack.push(ev.data.name);
    } else if (ev.type === 'test:pass' || ev.type === 'test:fail') {
      stack.length = ev.data.nesting;
      held = {
        file,
        nesting: ev.data.nesting,
        result: {
          path: [basename(file), ...stack, ev.data.name],
          ok: ev.type === 'test:pass',
          skip: Boolean(ev.data.skip) || Boolean(ev.data.todo),
          durationMs: Math.round((ev.data.details?.duration_ms ?? 0) * 10) / 10,
          ...(ev.type === 'test:fail' ? { error: describe(ev.data.details?.error) } : {}),
          diagnostics: [],
        },
      };
    }
  }
  const out = flush();
  if (out) yield out;
}

/** Parses the reporter's output; lines that are not results are ignored. */
export function parseGuestResults(text: string): GuestTestResult[] {
  const out: GuestTestResult[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{"path":')) continue;
    try {
      out.push(JSON.parse(line) as GuestTestResult);
    } catch { /* a torn line: the run's exit code tells */ }
  }
  return out;
}
