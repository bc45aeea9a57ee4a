import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseManifests, type ParseOutcome } from '../../src/sources/files/parse.js';
import { PROBLEM, convertObject } from '../../src/sources/convert.js';

const FIXTURES = new URL('../../../test/fixtures/manifests/', import.meta.url);

function docs(r: ParseOutcome): { index: number; path: string; value: unknown }[] {
  if (!r.ok) assert.fail(`expected documents, got ${JSON.stringify(r.problems)}`);
  return r.documents.map((d) => ({ index: d.index, path: d.path, value: d.value }));
}

test('parseManifests: documents, Lists and formats', async (t) => {
  const cases: { name: string; file: string; text: string; want: { index: number; path: string; value: unknown }[] }[] = [
    {
      name: 'multi-document YAML with empty and comment-only documents skipped',
      file: 'a.yaml',
      text: '---\n# nothing here\n---\nkind: Service\nmetadata: {name: a}\n---\n---\nkind: Node\n...\n',
      want: [
        { index: 2, path: '', value: { kind: 'Service', metadata: { name: 'a' } } },
        { index: 4, path: '', value: { kind: 'Node' } },
      ],
    },
    { name: 'an empty file', file: 'a.yaml', text: '', want: [] },
    { name: 'an empty JSON file', file: 'a.json', text: '  \n', want: [] },
    {
      name: 'kind: List is expanded, item paths kept',
      file: 'l.yaml',
      text: 'kind: Service\nmetadata: {name: first}\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n',
      want: [
        { index: 1, path: '', value: { kind: 'Service', metadata: { name: 'first' } } },
        { index: 2, path: 'items[0]', value: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } } },
        { index: 2, path: 'items[1]', value: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } } },
      ],
    },
    {
      name: 'a typed List (ServiceList) gives its items their kind and apiVersion',
      file: 'l.yaml',
      text: 'apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: a}\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n',
      want: [
        { index: 1, path: 'items[0]', value: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } } },
        { index: 1, path: 'items[1]', value: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'b' } } },
      ],
    },
    {
      name: 'JSON',
      file: 'a.json',
      text: '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}',
      want: [{ index: 1, path: '', value: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } } }],
    },
    {
      name: 'JSON in a .yaml file',
      file: 'a.yaml',
      text: '{\n\t"kind": "Service",\n\t"metadata": {"name": "a"}\n}\n',
      want: [{ index: 1, path: '', value: { kind: 'Service', metadata: { name: 'a' } } }],
    },
    {
      name: 'YAML 1.1 as kubectl reads it: yes/on/n are booleans, 0777 is octal; timestamps stay strings',
      file: 'a.yml',
      text: 'a: yes\nb: on\nc: 0777\nd: 2024-01-01\ne: "yes"\nf: n\n',
      want: [{ index: 1, path: '', value: { a: true, b: true, c: 511, d: '2024-01-01', e: 'yes', f: false } }],
    },
    {
      name: 'a byte-order mark is ignored',
      file: 'a.json',
      text: '\uFEFF{"kind": "Node"}',
      want: [{ index: 1, path: '', value: { kind: 'Node' } }],
    },
  ];
  for (const c of cases) await t.test(c.name, () => assert.deepEqual(docs(parseManifests(c.text, c.file)), c.want));
});

test('parseManifests: a syntax error names the file, document, line and column (the first error only)', async (t) => {
  const cases: { name: string; file: string; text: string; want: { code: string; where: string; message: RegExp }[] }[] = [
    {
      name: 'unclosed flow mapping in the second document',
      file: 'dir/a.yaml',
      text: 'kind: Service\n---\napiVersion: v1\nkind: Service\nmetadata: {name: alpha\n  namespace: [e2e\n',
      want: [
        { code: PROBLEM.SYNTAX, where: 'dir/a.yaml document 2, line 5 column 18', message: /^not valid YAML: Implicit keys need to be on a single line \(and 3 more errors after it\)$/ },
      ],
    },
    {
      name: 'duplicate key',
      file: 'b.yaml',
      text: 'kind: Service\nkind: Node\n',
      want: [{ code: PROBLEM.SYNTAX, where: 'b.yaml document 1, line 2 column 1', message: /^not valid YAML: Map keys must be unique$/ }],
    },
    {
      name: 'bad indentation',
      file: 'c.yaml',
      text: 'metadata:\n  name: a\n name: b\n',
      want: [{ code: PROBLEM.SYNTAX, where: 'c.yaml document 1, line 3 column 1', message: /^not valid YAML: All mapping items must start at the same column$/ }],
    },
    {
      name: 'an alias bomb',
      file: 'e.yaml',
      text: 'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n',
      want: [{ code: PROBLEM.SYNTAX, where: 'e.yaml document 1', message: /^not valid YAML: .*alias/i }],
    },
    {
      name: 'JSON with a trailing comma',
      file: 'd.json',
      text: '{\n  "kind": "Service",\n}\n',
      want: [{ code: PROBLEM.SYNTAX, where: 'd.json document 1, line 3 column 1', message: /^not valid JSON: / }],
    },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const r = parseManifests(c.text, c.file);
      assert.equal(r.ok, false);
      const problems = r.ok ? [] : r.problems;
      assert.deepEqual(problems.map((p) => [p.code, p.where]), c.want.map((w) => [w.code, w.where]), JSON.stringify(problems, null, 2));
      c.want.forEach((w, i) => assert.match(problems[i]?.message ?? '', w.message));
    });
  }
});

test('parseManifests + convertObject: a kubectl-style JSON List fixture', () => {
  const path = fileURLToPath(new URL('services-list.json', FIXTURES));
  const parsed = parseManifests(readFileSync(path, 'utf8'), path);
  assert.ok(parsed.ok);
  const out = parsed.documents.map((d) => convertObject(d.value, { origin: { source: 'files', file: path, document: d.index }, where: `${path} document ${d.index}`, path: d.path }));
  const objects = out.flatMap((o) => (o.status === 'ok' ? o.objects : []));
  assert.deepEqual(objects.map((o) => `${o.kind} ${o.kind === 'Node' ? o.name : o.id}`), ['Service shop/api', 'EndpointSlice shop/api-x7k2p']);
  const [svc, slice] = objects;
  assert.ok(svc?.kind === 'Service' && slice?.kind === 'EndpointSlice');
  assert.deepEqual(svc.ports, [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }]);
  assert.deepEqual(slice.endpoints.map((e) => e.conditions), [
    { ready: true, serving: true, terminating: false },
    { ready: false, serving: false, terminating: true },
  ]);
});
