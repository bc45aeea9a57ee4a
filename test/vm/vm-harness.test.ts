/**
 * The VM harness's host-side pieces that need no VM: the job script's quoting, the static
 * busybox check, and the reporter that carries each guest test's result back to the host.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isStaticElf } from '../helpers/vm-build.js';
import { parseGuestResults } from '../helpers/vm-reporter.js';
import { jobScript } from '../helpers/vm.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));

test('the job script runs the command in cwd with the environment, whatever quotes they hold', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-vm-job-test-'));
  try {
    const awkward = `it's "quoted" $HOME \`x\` \\ end`;
    const script = jobScript(dir, { ODD: awkward, PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, ['sh', '-c', 'printf "%s|%s|%s" "$(pwd)" "$ODD" "$1"', 'sh', awkward]);
    writeFileSync(join(dir, 'job.sh'), script);
    const r = spawnSync('sh', [join(dir, 'job.sh')], { encoding: 'utf8', env: {} });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${dir}|${awkward}|${awkward}`);
    assert.throws(() => jobScript(dir, { 'BAD-NAME': 'x' }, ['true']), /bad environment variable name "BAD-NAME"/);
    assert.throws(() => jobScript(dir, {}, []), /command is empty/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('isStaticElf tells a static busybox from a dynamic binary', () => {
  assert.equal(isStaticElf(process.execPath), false, 'node is dynamically linked');
  const r = spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' });
  if (r.status === 0) assert.equal(isStaticElf(r.stdout.trim()), true, 'busybox-static is statically linked');
  assert.equal(isStaticElf(fileURLToPath(import.meta.url)), false, 'not an ELF file');
});

test('the VM reporter names each guest test by file and nesting, with its error and diagnostics', () => {
  const sample = join(DIST, 'test/vm/fixtures/reporter-sample.js');
  const r = spawnSync(process.execPath, ['--test', `--test-reporter=${join(DIST, 'test/helpers/vm-reporter.js')}`, sample], {
    encoding: 'utf8',
    timeout: 60_000,
    // Without this the child would report to our runner instead of through the reporter.
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')),
  });
  assert.equal(r.status, 1, 'the sample has a failing test');
  const results = parseGuestResults(r.stdout);
  const byPath = new Map(results.map((x) => [x.path.join(' › '), x]));
  assert.deepEqual([...byPath.keys()].sort(), [
    'reporter-sample.js › outer', 'reporter-sample.js › outer › inner fails', 'reporter-sample.js › outer › inner passes', 'reporter-sample.js › second',
  ]);
  assert.equal(byPath.get('reporter-sample.js › outer › inner passes')?.ok, true);
  assert.deepEqual(byPath.get('reporter-sample.js › outer › inner passes')?.diagnostics, ['a note']);
  const failed = byPath.get('reporter-sample.js › outer › inner fails');
  assert.equal(failed?.ok, false);
  assert.match(failed?.error ?? '', /arithmetic in the sample/);
  assert.equal(byPath.get('reporter-sample.js › outer')?.ok, false, 'a failing subtest fails its parent');
  assert.equal(byPath.get('reporter-sample.js › second')?.ok, true);
});
