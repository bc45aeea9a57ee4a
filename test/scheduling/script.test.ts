/**
 * The shared scheduler script (fixtures.ts SCHED_SCRIPT) is only a good referee if it tells
 * the schedulers apart: replayed with the kernel's counter moves (an open adds an active
 * connection; a close turns it inactive, as TCP TIME_WAIT entries stay counted), every
 * scheduler must produce a different series of choices, so agreeing with the kernel
 * (test/vm/schedulers.guest.ts) or with the proxy cannot happen by a wrong algorithm's luck.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SCHEDULER_NAMES } from '../../src/core/annotations.js';
import { createScheduler, kernelListOrder } from '../../src/scheduling/index.js';
import { D, SCHED_SCRIPT, SCHED_WEIGHTS } from './fixtures.js';

test('the shared script gives every scheduler a different series of choices', () => {
  const series = new Map<string, string>();
  for (const name of SCHEDULER_NAMES) {
    const s = createScheduler(name, { now: () => 0 });
    const all = SCHED_WEIGHTS.map((w, i) => new D(`p${i + 1}`, w, `198.18.${2 + i}.1`, 8080));
    let list: D[] = [];
    for (const d of [...all].reverse()) {
      list = kernelListOrder(list, [...list, d]);
      s.update(list);
    }
    const opened: D[] = [];
    for (const step of SCHED_SCRIPT) {
      if ('open' in step) {
        const pick = s.schedule(list, { clientIP: `198.18.1.${10 + step.open}`, clientPort: 0, vip: `198.18.100.${1 + step.to}`, vport: 80, protocol: 'TCP' });
        const d = list.find((x) => x.key === pick?.key);
        assert.ok(d, `${name} chose nothing`);
        d.activeConns++;
        opened.push(d);
      } else {
        const d = opened[step.close];
        assert.ok(d, `close ${step.close} refers to no open`);
        d.activeConns--;
        d.inactiveConns++;
      }
    }
    const picks = opened.map((d) => d.name).join(' ');
    const twin = [...series].find(([, p]) => p === picks);
    assert.equal(twin, undefined, `${name} and ${twin?.[0]} choose the same on the script: ${picks}`);
    series.set(name, picks);
  }
});
