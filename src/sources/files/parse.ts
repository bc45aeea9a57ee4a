/**
 * Reads the text of one manifest file into raw documents: YAML (multi-document, `---`) or JSON,
 * with `kind: List` and `*List` kinds (ServiceList, ...) expanded into their items. Empty
 * documents are skipped. Pure: no I/O.
 *
 * YAML is read as YAML 1.1, as kubectl reads it (`yes`/`on` are booleans, `0777` is octal), except
 * that timestamps stay strings (Kubernetes has no timestamp fields kproxy reads).
 */
import { parseAllDocuments, type Document, type Tags } from 'yaml';
import type { SourceProblem } from '../../core/events.js';
import { PROBLEM, isRecord } from '../convert.js';

export interface ManifestDocument {
  /** 1-based position of the document in its file. */
  readonly index: number;
  /** Field path of the object inside the document: '' at top level, "items[3]" for a List item. */
  readonly path: string;
  readonly value: unknown;
}

export type ParseOutcome =
  | { readonly ok: true; readonly documents: readonly ManifestDocument[] }
  /** The file is not valid YAML/JSON; nothing in it can be trusted. */
  | { readonly ok: false; readonly problems: readonly SourceProblem[] };

export type ManifestFormat = 'yaml' | 'json';

export function formatOf(file: string): ManifestFormat {
  return file.toLowerCase().endsWith('.json') ? 'json' : 'yaml';
}

/** The location prefix of a document in problems: "a.yaml document 2". */
export function documentWhere(file: string, index: number): string {
  return `${file} document ${index}`;
}

const TIMESTAMP_TAG = 'tag:yaml.org,2002:timestamp';
const MAX_ALIASES = 100;

export function parseManifests(text: string, file: string, format: ManifestFormat = formatOf(file)): ParseOutcome {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  return format === 'json' ? parseJSON(body, file) : parseYAML(body, file);
}

function lineColumn(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, col: offset - start + 1 };
}

function parseJSON(text: string, file: string): ParseOutcome {
  if (text.trim() === '') return { ok: true, documents: [] };
  try {
    return { ok: true, documents: expand(JSON.parse(text) as unknown, 1) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const pos = /at position (\d+)/.exec(message);
    let where = documentWhere(file, 1);
    if (pos?.[1] !== undefined) {
      const { line, col } = lineColumn(text, Number(pos[1]));
      where += `, line ${line} column ${col}`;
    }
    const clean = message.replace(/ in JSON at position \d+.*$/, '').replace(/^Unexpected end of JSON input$/, 'unexpected end of the file');
    return { ok: false, problems: [{ code: PROBLEM.SYNTAX, where, message: `not valid JSON: ${clean}` }] };
  }
}

function parseYAML(text: string, file: string): ParseOutcome {
  const docs: Document.Parsed[] = parseAllDocuments(text, {
    version: '1.1',
    customTags: (tags: Tags): Tags => tags.filter((t) => typeof t === 'string' || t.tag !== TIMESTAMP_TAG),
    prettyErrors: true,
    uniqueKeys: true,
  });
  const documents: ManifestDocument[] = [];
  // Only the first error is reported (as kubectl does): the others are usually its echoes.
  let first: SourceProblem | undefined;
  let errors = 0;
  docs.forEach((doc, i) => {
    const index = i + 1;
    for (const err of doc.errors) {
      errors++;
      if (first !== undefined) continue;
      const pos = err.linePos?.[0];
      const where = pos ? `${documentWhere(file, index)}, line ${pos.line} column ${pos.col}` : documentWhere(file, index);
      const text = (err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      first = { code: PROBLEM.SYNTAX, where, message: `not valid YAML: ${text}` };
    }
    if (errors > 0) return;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIASES });
    } catch (err) {
      errors++;
      first ??= { code: PROBLEM.SYNTAX, where: documentWhere(file, index), message: `not valid YAML: ${err instanceof Error ? err.message : String(err)}` };
      return;
    }
    documents.push(...expand(value, index));
  });
  if (first === undefined) return { ok: true, documents };
  const more = errors > 1 ? ` (and ${errors - 1} more error${errors > 2 ? 's' : ''} after it)` : '';
  return { ok: false, problems: [{ ...first, message: first.message + more }] };
}

/** Expands a List document into its items; drops empty documents. */
function expand(value: unknown, index: number): ManifestDocument[] {
  if (value === null || value === undefined) return [];
  if (isRecord(value) && typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) {
    const listKind = value.kind;
    const listVersion = value.apiVersion;
    // Typed lists (ServiceList) from the API omit kind/apiVersion on items: infer them.
    const itemKind = listKind === 'List' ? undefined : listKind.slice(0, -'List'.length);
    const items: readonly unknown[] = value.items;
    return items.map((item, i): ManifestDocument => {
      let v = item;
      if (itemKind !== undefined && isRecord(item) && item.kind === undefined) {
        v = { apiVersion: listVersion, ...item, kind: itemKind };
      }
      return { index, path: `items[${i}]`, value: v };
    });
  }
  return [{ index, path: '', value }];
}
