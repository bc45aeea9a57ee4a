/**
 * Large generated texts (an iptables-restore input, an nft transaction) made on demand, line by
 * line, and handed out in ~64 KB chunks, never whole: at 10,000 services a full ruleset is 35 MB
 * (iptables) to 60 MB (nftables) of text, and holding it as one string, plus its copy in a Buffer
 * for the tool's stdin, was a third of kproxy's peak memory. Pure.
 */

/** Chunks are cut at the first line end after this many characters. */
const CHUNK_CHARS = 64 * 1024;

/**
 * A text as the lines a function produces, each followed by '\n'. Every iteration (of the chunks,
 * or of lines()) runs the function again, so the producer must read only immutable data (a
 * rendered model): an error message can then find a line of the text after the fact without the
 * text having been kept.
 */
export class ChunkedText implements Iterable<string> {
  constructor(private readonly produce: () => Iterable<string>) {}

  /** The lines, without their '\n'. */
  lines(): Iterable<string> {
    return this.produce();
  }

  /** The text in chunks of whole lines, each about CHUNK_CHARS long. */
  *[Symbol.iterator](): Iterator<string> {
    let parts: string[] = [];
    let size = 0;
    for (const line of this.produce()) {
      parts.push(line);
      size += line.length + 1;
      if (size >= CHUNK_CHARS) {
        parts.push('');
        yield parts.join('\n');
        parts = [];
        size = 0;
      }
    }
    if (parts.length > 0) {
      parts.push('');
      yield parts.join('\n');
    }
  }

  /** The whole text as one string: for tests and small texts, not for a whole ruleset. */
  get text(): string {
    return [...this].join('');
  }
}

/** A tool's input: a string, or a text made in chunks. */
export type Text = string | ChunkedText;

/** The text split at every '\n', as String.split('\n') would (so a text ending in '\n' ends with ''). */
export function* linesOf(text: Text): Iterable<string> {
  if (typeof text !== 'string') {
    yield* text.lines();
    yield '';
    return;
  }
  let at = 0;
  for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n', at)) {
    yield text.slice(at, end);
    at = end + 1;
  }
  yield text.slice(at);
}

/** Lines `n - radius` to `n + radius` (numbered from 1) of a text, with their numbers. */
export function linesAround(text: Text, n: number, radius = 0): [number, string][] {
  const out: [number, string][] = [];
  let i = 0;
  for (const l of linesOf(text)) {
    if (++i > n + radius) break;
    if (i >= n - radius) out.push([i, l]);
  }
  return out;
}

/**
 * Splits text that arrives in pieces into lines (without '\n'); a last line without '\n' is
 * passed on at end(). A line may be a slice of its piece, never of the whole text.
 */
export class LineSplitter {
  private rest = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(piece: string): void {
    const text = this.rest + piece;
    let at = 0;
    for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n', at)) {
      this.onLine(text.slice(at, end));
      at = end + 1;
    }
    this.rest = text.slice(at);
  }

  end(): void {
    if (this.rest !== '') this.onLine(this.rest);
    this.rest = '';
  }
}

/** The whole text as one string. */
export function textOf(text: Text): string {
  return typeof text === 'string' ? text : text.text;
}

/**
 * A template literal as one flat string (`flat\`goto ${chain}\``). An untagged template or `+`
 * makes a rope instead, a 32-byte node per part that also keeps its parts alive: for the strings
 * a rendered model keeps, several hundred thousand at 10,000 services, 2-3x the memory of the text.
 * (Flat when at least two parts are not empty; with one, V8 returns that part as it is.)
 */
export function flat(strings: TemplateStringsArray, ...values: readonly (string | number)[]): string {
  const parts: (string | number)[] = [strings[0] ?? ''];
  for (let i = 0; i < values.length; i++) parts.push(values[i] ?? '', strings[i + 1] ?? '');
  return parts.join('');
}

/**
 * A copy of a string that shares no memory with it: a name cut out of a large dump (a slice)
 * would keep the whole dump alive for as long as the name is kept.
 */
export function copyOf(s: string): string {
  return s.length < 2 ? s : Array.from(s).join('');
}
