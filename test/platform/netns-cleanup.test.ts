/** Waiting for the kernel's namespace teardown, read from a /proc-shaped folder the test writes. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { netnsCleanupRunning, waitForNetnsCleanup } from '../../src/platform/netns.js';

function fakeProc(comms: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'kp-fakeproc-'));
  for (const [pid, comm] of Object.entries(comms)) {
    mkdirSync(join(root, pid));
    writeFileSync(join(root, pid, 'comm'), `${comm}\n`);
  }
  mkdirSync(join(root, 'net')); // not a pid: ignored
  return root;
}

test('a kworker running the netns queue means a teardown is running; other kworkers and processes do not', () => {
  const busy = fakeProc({ '1': 'systemd', '35': 'kworker/u8:1+netns', '40': 'kworker/0:0-events' });
  const idle = fakeProc({ '1': 'systemd', '35': 'kworker/u8:1-netns', '40': 'kworker/0:0+events', '41': 'netns-helper+netns' });
  try {
    assert.equal(netnsCleanupRunning(busy), true);
    assert.equal(netnsCleanupRunning(idle), false, 'an idle netns worker (-netns) is not a teardown');
  } finally {
    rmSync(busy, { recursive: true });
    rmSync(idle, { recursive: true });
  }
});

test('the wait ends once the teardown has been over for the quiet time, and says how long it waited; it gives up at its bound', async () => {
  const root = fakeProc({ '35': 'kworker/u8:1+netns' });
  try {
    setTimeout(() => writeFileSync(join(root, '35', 'comm'), 'kworker/u8:1-netns\n'), 300);
    const r = await waitForNetnsCleanup({ procRoot: root, pollMs: 20, quietMs: 100, timeoutMs: 5000 });
    assert.equal(r.timedOut, false);
    assert.ok(r.waitedMs >= 250 && r.waitedMs < 2000, `waited ${r.waitedMs} ms`);
    writeFileSync(join(root, '35', 'comm'), 'kworker/u8:1+netns\n');
    const bounded = await waitForNetnsCleanup({ procRoot: root, pollMs: 20, quietMs: 100, timeoutMs: 200 });
    assert.equal(bounded.timedOut, true);
  } finally {
    rmSync(root, { recursive: true });
  }
});
