import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedText } from '../../src/core/text.js';
import { Writable } from 'node:stream';
import { FakeExec, execLines, realExec, runTool, writeText } from '../../src/platform/exec.js';

const bigLines = (n: number): string[] => Array.from({ length: n }, (_, i) => `line ${i} ${'x'.repeat(60)}`);

test('a ChunkedText input reaches the tool whole and in order, however large', async () => {
  const lines = bigLines(60_000); // ~4 MB: many times a pipe's buffer, so writing waits for the tool
  const r = await realExec('sha256sum', [], { input: new ChunkedText(() => lines) });
  const s = await realExec('sha256sum', [], { input: lines.join('\n') + '\n' });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, s.stdout);
  assert.match(r.stdout, /^[0-9a-f]{64} /);
});

test('a tool that exits without reading its input does not hang the writer', async () => {
  const r = await realExec('true', [], { input: new ChunkedText(() => bigLines(60_000)) });
  assert.equal(r.code, 0);
});

test('when making the input fails, the tool is killed before it sees the end of its input', async () => {
  const input = new ChunkedText(function* () {
    yield* bigLines(2000);
    throw new Error('model broken');
  });
  // The shell prints "eof" only if its input ends normally.
  const r = await runTool('sh', ['-c', 'cat > /dev/null && echo eof'], { input });
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stdout, /eof/);
  assert.match(r.stderr, /making the input failed: model broken/);
});

test('a timeout kills the tool: code 124', async () => {
  const r = await runTool('sleep', ['5'], { timeoutMs: 100 });
  assert.equal(r.code, 124);
  assert.match(r.stderr, /killed after 100ms/);
});

test('FakeExec records a ChunkedText input as one string', async () => {
  const fake = new FakeExec();
  await fake.exec('nft', ['-f', '-'], { input: new ChunkedText(() => ['add table ip t', 'add chain ip t c']) });
  assert.equal(fake.calls[0]?.input, 'add table ip t\nadd chain ip t c\n');
});

test('writeText resolves only once the stream has written everything out, the last small chunk included', async () => {
  // A slow sink, like a pipe whose reader lags: each write completes 10 ms later. kproxy --dry-run
  // exits once writeText resolves, so anything still queued then would be lost.
  let received = '';
  const sink = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, done) {
      setTimeout(() => {
        received += chunk.toString();
        done();
      }, 10);
    },
  });
  // 3 full chunks and a last one under the high-water mark (write() returns true for it).
  const lines = [...bigLines(3 * 1000), 'last line'];
  const text = new ChunkedText(() => lines);
  await writeText(sink, text);
  assert.equal(received, text.text);
  await writeText(sink, 'a small string');
  assert.ok(received.endsWith('a small string'));
});

test('stdoutLines: a tool\'s stdout arrives line by line (a last line without newline too), not in the result', async () => {
  const lines: string[] = [];
  const many = bigLines(20_000); // ~1.4 MB: many pipe reads, lines cut across them
  const r = await realExec('sh', ['-c', 'cat; printf "no newline"'], { input: new ChunkedText(() => many), stdoutLines: (l) => lines.push(l) });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, '');
  assert.deepEqual(lines, [...many, 'no newline']);
});

test('execLines works with an Exec that ignores stdoutLines and returns stdout whole', async () => {
  const fake = new FakeExec();
  fake.respond(() => true, { stdout: '*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n' });
  const lines: string[] = [];
  const r = await execLines(fake.exec, 'iptables-save', ['-t', 'nat'], (l) => lines.push(l));
  assert.deepEqual(lines, ['*nat', ':KUBE-SERVICES - [0:0]', 'COMMIT']);
  assert.equal(r.stdout, '');
});
