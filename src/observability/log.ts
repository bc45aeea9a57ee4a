/**
 * klog-shaped structured logging: `I1129 02:30:00.123456 msg key="value"`. Verbosity as
 * upstream's -v: info lines at level > v are dropped; warnings and errors always print.
 */
export interface Logger {
  info(msg: string, kv?: Record<string, unknown>, level?: number): void;
  warn(msg: string, kv?: Record<string, unknown>): void;
  error(msg: string, kv?: Record<string, unknown>): void;
  readonly verbosity: number;
}

export interface LogOptions {
  readonly verbosity: number;
  readonly write?: (line: string) => void;
  readonly now?: () => Date;
}

function formatKV(kv: Record<string, unknown> | undefined): string {
  if (!kv) return '';
  let out = '';
  for (const [k, v] of Object.entries(kv)) {
    if (v === undefined) continue;
    const text = v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v);
    out += ` ${k}=${JSON.stringify(text)}`;
  }
  return out;
}

export function createLogger(opts: LogOptions): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const now = opts.now ?? (() => new Date());
  const stamp = (sev: string): string => {
    const d = now();
    const p2 = (n: number): string => String(n).padStart(2, '0');
    const us = String(d.getUTCMilliseconds() * 1000).padStart(6, '0');
    return `${sev}${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}.${us}`;
  };
  return {
    verbosity: opts.verbosity,
    info(msg, kv, level = 0) {
      if (level > opts.verbosity) return;
      write(`${stamp('I')} ${JSON.stringify(msg)}${formatKV(kv)}`);
    },
    warn(msg, kv) {
      write(`${stamp('W')} ${JSON.stringify(msg)}${formatKV(kv)}`);
    },
    error(msg, kv) {
      write(`${stamp('E')} ${JSON.stringify(msg)}${formatKV(kv)}`);
    },
  };
}

/** A logger that keeps lines in memory, for tests. */
export function memoryLogger(verbosity = 10): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ verbosity, write: (l) => lines.push(l), now: () => new Date(0) });
  return Object.assign(logger, { lines });
}
