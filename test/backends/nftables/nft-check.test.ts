/**
 * Every nftables golden, checked by the real `nft` (`nft -c -f -`: parse and kernel check,
 * nothing applied) inside a throwaway network namespace that the test creates and always
 * destroys. Partial goldens are checked on top of their `.base.nft` full sync, which is
 * applied first inside that namespace. Never runs nft in the root namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createNetns, kernelTestGate, type Netns } from '../../../src/platform/netns.js';
import { serializeCleanup, serializeDeleteChains } from '../../../src/backends/nftables/serialize.js';

const DIR = fileURLToPath(new URL('../../../../test/golden/nftables/', import.meta.url));
const TOOLS = ['nft'] as const;

function goldens(): string[] {
  return readdirSync(DIR).filter((f) => f.endsWith('.nft') && !f.endsWith('.base.nft')).sort();
}

async function withNetns(fn: (ns: Netns) => Promise<void>): Promise<void> {
  const ns = await createNetns('kp-nftgold');
  try {
    await fn(ns);
  } finally {
    await ns.destroy();
  }
}

async function nft(ns: Netns, input: string, check: boolean, what: string): Promise<void> {
  const r = await ns.exec('nft', check ? ['-c', '-f', '-'] : ['-f', '-'], { input });
  assert.equal(r.code, 0, `nft ${check ? '-c ' : ''}rejected ${what}:\n${r.stderr}`);
}

test('there are nftables goldens to check', () => {
  assert.ok(goldens().length >= 10, `expected goldens in ${DIR}`);
});

for (const file of goldens()) {
  test(`nft -c accepts golden ${file}`, async (t) => {
    if (!(await kernelTestGate(t, { tools: TOOLS }))) return;
    await withNetns(async (ns) => {
      const text = readFileSync(DIR + file, 'utf8');
      if (file.startsWith('partial-')) {
        const base = file.replace(/\.nft$/, '.base.nft');
        await nft(ns, readFileSync(DIR + base, 'utf8'), false, base);
        await nft(ns, text, true, file);
        // Apply it for real, then delete the chains it left stale (the later transaction).
        await nft(ns, text, false, file);
        const stale = [...text.matchAll(/^flush chain ip6? kube-proxy (\S*\/\S*)$/gm)]
          .map((m) => m[1] ?? '')
          .filter((c) => !new RegExp(`^add rule ip6? kube-proxy ${c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `, 'm').test(text));
        const del = serializeDeleteChains(text.includes(' ip6 kube-proxy') ? 'ip6' : 'ip', stale);
        if (del !== '') await nft(ns, del, false, `${file} stale chain deletion`);
      } else {
        await nft(ns, text, true, file);
      }
    });
  });
}

test('a full golden applies, re-applies (idempotent) and cleans up', async (t) => {
  if (!(await kernelTestGate(t, { tools: TOOLS }))) return;
  await withNetns(async (ns) => {
    const text = readFileSync(DIR + 'overall.nft', 'utf8');
    await nft(ns, text, false, 'overall.nft');
    await nft(ns, text, false, 'overall.nft again');
    const listed = await ns.execOk('nft', ['list', 'table', 'ip', 'kube-proxy']);
    assert.match(listed.stdout, /service-ULMVA6XW-ns1\/svc1\/tcp\/p80/);
    await nft(ns, serializeCleanup('ip'), false, 'cleanup');
    await nft(ns, serializeCleanup('ip'), false, 'cleanup again');
    const after = await ns.exec('nft', ['list', 'table', 'ip', 'kube-proxy']);
    assert.notEqual(after.code, 0);
  });
});
