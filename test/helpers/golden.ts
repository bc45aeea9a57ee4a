/**
 * Golden files: `assertGolden(name, text)` compares with test/golden/<name>; run with
 * UPDATE_GOLDEN=1 to rewrite them. CI never sets it, so drift fails there.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../test/golden/', import.meta.url));

export function assertGolden(name: string, actual: string): void {
  const file = ROOT + name;
  if (process.env.UPDATE_GOLDEN === '1' && process.env.CI !== 'true') {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  assert.ok(existsSync(file), `golden file ${name} is missing: run UPDATE_GOLDEN=1 npm test`);
  assert.equal(actual, readFileSync(file, 'utf8'), `output differs from golden file test/golden/${name} (UPDATE_GOLDEN=1 regenerates)`);
}
