/**
 * The tests that need a real IPVS kernel, run inside the qemu VM (test/helpers/vm.ts): one boot
 * runs every guest test file with `node --test`, and each guest test comes back as a subtest
 * here, so a failure names the guest test and carries its error.
 *
 * Guest test files are `test/**\/*.guest.ts` (compiled to dist/**\/*.guest.js; the host runner
 * only picks *.test.js). Adding one is all it takes to run it in the VM. Host test files that
 * should also run in the guest (with extra environment) go in GUEST_EXTRA below.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseGuestResults } from '../helpers/vm-reporter.js';
import { runInVm, vmGate } from '../helpers/vm.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST = join(REPO_ROOT, 'dist');

/**
 * Host test files (dist-relative .js paths) to run in the guest as well, and the environment
 * they get there. E.g. the kernel scenario table in IPVS mode:
 *   { file: 'test/netns/kernel-modes.test.js', env: { KPROXY_KERNEL_MODES: 'ipvs' } }
 */
const GUEST_EXTRA: readonly { file: string; env?: Record<string, string> }[] = [
  // The shared kernel scenario table, in IPVS mode (its waits scale with the emulation: SLOW).
  { file: 'test/netns/kernel-modes.test.js', env: { KPROXY_KERNEL_MODES: 'ipvs' } },
];

/** Every compiled guest test file, then GUEST_EXTRA, as paths relative to the checkout. */
function guestFiles(): string[] {
  const own = readdirSync(DIST, { recursive: true }).map(String).filter((f) => f.endsWith('.guest.js')).sort();
  return [...own, ...GUEST_EXTRA.map((x) => x.file)].map((f) => relative(REPO_ROOT, join(DIST, f)));
}

test('guest tests on a real IPVS kernel (qemu, Debian kernel)', { timeout: 20 * 60_000 }, async (t) => {
  if (!(await vmGate(t))) return;
  const files = guestFiles();
  assert.ok(files.length > 0, 'no dist/**/*.guest.js: run npm run build');
  const env: Record<string, string> = Object.assign({}, ...GUEST_EXTRA.map((x) => x.env ?? {}));
  const r = await runInVm({
    command: [
      process.execPath, '--test', '--test-concurrency=1', '--test-timeout=600000',
      '--test-reporter=./dist/test/helpers/vm-reporter.js', '--test-reporter-destination=stdout',
      '--test-reporter=spec', '--test-reporter-destination=stderr',
      ...files,
    ],
    env,
    timeoutMs: 18 * 60_000,
  });
  t.diagnostic(`VM image ${r.image.packageName}: ${r.image.built ? `built in ${r.buildMs} ms` : `cached (${r.buildMs} ms)`}; qemu ran ${r.durationMs} ms; guest boot ${r.bootMs ?? '?'} ms; guest tests ${r.commandMs ?? '?'} ms`);
  const results = parseGuestResults(r.stdout);
  const context = (): string => `\n--- guest stderr (spec) ---\n${r.stderr.slice(-8000)}\n--- console ---\n${r.console.slice(-4000)}`;
  assert.ok(results.length > 0, `the guest reported no test (exit ${r.code})${context()}`);
  for (const res of results) {
    await t.test(res.path.join(' › '), (st) => {
      if (res.skip) return st.skip('skipped in the guest');
      st.diagnostic(`${res.durationMs} ms in the guest`);
      for (const d of res.diagnostics ?? []) st.diagnostic(d);
      if (!res.ok) assert.fail(`guest test failed:\n${res.error ?? '(no error text)'}`);
    });
  }
  const reported = new Set(results.map((x) => x.path[0]));
  for (const f of files) assert.ok(reported.has(f.split('/').pop()), `${f} reported no test in the guest${context()}`);
  assert.equal(r.code, 0, `node --test in the guest exited ${r.code}${context()}`);
});
