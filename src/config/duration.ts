/** Go's time.Duration text ("250ms", "1m30s", "2h", "-1h"), as upstream's flags and config take it. */
const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a duration into milliseconds; undefined when malformed. "0" is allowed, so is a sign (as Go). */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  const sign = t.startsWith('-') ? -1 : 1;
  const s = t.replace(/^[-+]/, '');
  if (s === '0') return 0;
  const re = /([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m?.[1] || !m[2]) return undefined;
    total += Number(m[1]) * (UNITS[m[2]] ?? NaN);
    pos = re.lastIndex;
  }
  return pos === 0 || !Number.isFinite(total) ? undefined : sign * total || 0;
}

/** Formats milliseconds the way Go prints a Duration ("30s", "1m0s", "250ms", "-1h0m0s"). */
export function formatDuration(ms: number): string {
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const totalS = ms / 1000;
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS % 3600) / 60);
  const sec = +(totalS % 60).toFixed(3);
  if (h > 0) return `${h}h${m}m${sec}s`;
  if (m > 0) return `${m}m${sec}s`;
  return `${sec}s`;
}
