#!/usr/bin/env node
// Runs every compiled *.test.js under dist/ with node's test runner. Listing files ourselves
// keeps helpers under dist/test/helpers from being run as tests (node 20 treats every file
// under a "test" folder as a test file). Extra arguments filter by path substring.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const filters = process.argv.slice(2);
const files = readdirSync('dist', { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.test.js'))
  .map((f) => join('dist', f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
// The VM tests (dist/test/vm/: one qemu boot running every guest test, several minutes under
// software emulation) get a longer per-test bound than the rest.
const vm = files.filter((f) => f.startsWith(join('dist', 'test', 'vm') + '/'));
const rest = files.filter((f) => !vm.includes(f));
let status = 0;
for (const [group, timeout] of [[rest, 180000], [vm, 1200000]]) {
  if (group.length === 0) continue;
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', `--test-timeout=${timeout}`, ...group], { stdio: 'inherit' });
  if (r.status !== 0) status = r.status ?? 1;
}
process.exit(status);
