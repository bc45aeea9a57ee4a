import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedText, LineSplitter, copyOf, flat, linesAround, linesOf, textOf } from '../../src/core/text.js';

test('ChunkedText: chunks of whole lines, about 64 KB each, that join to every line plus its newline', () => {
  const lines = Array.from({ length: 5000 }, (_, i) => `-A KUBE-SEP-${i} -m comment --comment "line ${i}" -j DNAT`);
  let made = 0;
  const t = new ChunkedText(function* () {
    made++;
    yield* lines;
  });
  const chunks = [...t];
  assert.ok(chunks.length > 1, `${chunks.length} chunks`);
  for (const c of chunks) {
    assert.ok(c.endsWith('\n'), 'every chunk ends at a line end');
    assert.ok(c.length < 64 * 1024 + 200, `chunk of ${c.length}`);
  }
  for (const c of chunks.slice(0, -1)) assert.ok(c.length >= 64 * 1024);
  assert.equal(chunks.join(''), lines.join('\n') + '\n');
  // Every iteration makes the text again.
  assert.equal(t.text, chunks.join(''));
  assert.deepEqual([...t.lines()], lines);
  assert.equal(made, 3);
});

test('ChunkedText: no lines is the empty text', () => {
  const t = new ChunkedText(() => []);
  assert.deepEqual([...t], []);
  assert.equal(t.text, '');
});

test('linesOf splits a string and a ChunkedText alike, as String.split would', () => {
  for (const s of ['a\nb\n', 'a\nb', '', '\n', 'one']) assert.deepEqual([...linesOf(s)], s.split('\n'), JSON.stringify(s));
  const t = new ChunkedText(() => ['*nat', 'COMMIT']);
  assert.deepEqual([...linesOf(t)], textOf(t).split('\n'));
  assert.equal(textOf('x'), 'x');
});

test('LineSplitter: lines cut across pieces come out whole; the last one without newline at end()', () => {
  const out: string[] = [];
  const split = new LineSplitter((l) => out.push(l));
  for (const piece of ['*na', 't\n:A - [0:0]\n', '', '\n-A A', ' -j X\nCOM', 'MIT']) split.push(piece);
  assert.deepEqual(out, ['*nat', ':A - [0:0]', '', '-A A -j X']);
  split.end();
  assert.deepEqual(out, ['*nat', ':A - [0:0]', '', '-A A -j X', 'COMMIT']);
});

test('flat and copyOf give the same text as a template or the string itself', () => {
  const chain = 'KUBE-SVC-XPGD46QRK7WJZT7O';
  assert.equal(flat`goto ${chain} ${3}`, `goto ${chain} 3`);
  assert.equal(flat``, '');
  for (const s of ['', 'a', chain, 'ünï😀']) assert.equal(copyOf(s), s);
});

test('linesAround gives the numbered lines around one line, of a string or a chunked text alike', () => {
  const s = 'a\nb\nc\nd\ne\n';
  const chunked = new ChunkedText(() => ['a', 'b', 'c', 'd', 'e']);
  for (const t of [s, chunked]) {
    assert.deepEqual(linesAround(t, 3, 1), [[2, 'b'], [3, 'c'], [4, 'd']]);
    assert.deepEqual(linesAround(t, 1, 2), [[1, 'a'], [2, 'b'], [3, 'c']]);
    assert.deepEqual(linesAround(t, 5), [[5, 'e']]);
    assert.deepEqual(linesAround(t, 9), []);
  }
});
