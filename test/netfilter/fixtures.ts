import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Reads test/netfilter/fixtures/<name> from the source tree (tests run from dist/). */
export function fixture(name: string): string {
  return readFileSync(fileURLToPath(new URL(`../../../test/netfilter/fixtures/${name}`, import.meta.url)), 'utf8');
}

export function goldenSource(name: string): string {
  return readFileSync(fileURLToPath(new URL(`../../../test/golden/${name}`, import.meta.url)), 'utf8');
}
