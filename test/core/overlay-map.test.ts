/**
 * OverlayMap: a draft over a previous map behaves exactly as a copy of it with the same set and
 * delete calls (values, size, iteration order), over long random sequences of snapshots, and
 * every earlier result stays as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverlayMap } from '../../src/core/overlay-map.js';
import { rng } from '../helpers/rng.js';

function same(actual: ReadonlyMap<string, number>, expected: ReadonlyMap<string, number>, where: string): void {
  assert.deepEqual([...actual], [...expected], `${where}: entries in order`);
  assert.deepEqual([...actual.keys()], [...expected.keys()], `${where}: keys`);
  assert.deepEqual([...actual.values()], [...expected.values()], `${where}: values`);
  const each: [string, number][] = [];
  actual.forEach((v, k, m) => {
    assert.equal(m, actual);
    each.push([k, v]);
  });
  assert.deepEqual(each, [...expected], `${where}: forEach`);
  assert.equal(actual.size, expected.size, `${where}: size`);
  for (let k = 0; k < 60; k++) {
    const key = `k${k}`;
    assert.equal(actual.has(key), expected.has(key), `${where}: has ${key}`);
    assert.equal(actual.get(key), expected.get(key), `${where}: get ${key}`);
  }
}

for (const seed of [1, 2, 3, 4]) {
  test(`random drafts (seed ${seed}) equal Map copies with the same changes, and earlier maps do not change`, () => {
    const r = rng(seed);
    let overlay: ReadonlyMap<string, number> | undefined;
    let plain = new Map<string, number>();
    const history: [ReadonlyMap<string, number>, Map<string, number>][] = [];
    let kinds = 0;
    for (let step = 0; step < 300; step++) {
      const draft = OverlayMap.draft(overlay);
      const copy = new Map(plain);
      // Mostly a few changes; now and then many (a full resync), to cross the flattening point.
      const n = r(20) === 0 ? 40 : 1 + r(4);
      for (let i = 0; i < n; i++) {
        const key = `k${r(50)}`;
        if (r(3) === 0) {
          draft.delete(key);
          copy.delete(key);
        } else {
          const v = r(1000);
          draft.set(key, v);
          copy.set(key, v);
        }
        assert.equal(draft.get(key), copy.get(key));
      }
      overlay = draft.done();
      plain = copy;
      if (overlay instanceof OverlayMap) kinds |= 1;
      else kinds |= 2;
      same(overlay, plain, `step ${step}`);
      history.push([overlay, plain]);
    }
    for (const [i, [o, p]] of history.entries()) same(o, p, `kept ${i}`);
    assert.equal(kinds, 3, 'both overlays and flattened Maps were made');
  });
}

test('a key deleted and added again goes to the end; one set again keeps its place', () => {
  const d1 = OverlayMap.draft<string, number>(new Map([['a', 1], ['b', 2], ['c', 3]]));
  d1.delete('a');
  d1.set('a', 4);
  d1.set('b', 5);
  const m1 = d1.done();
  assert.ok(m1 instanceof OverlayMap);
  assert.deepEqual([...m1], [['b', 5], ['c', 3], ['a', 4]]);
  const d2 = OverlayMap.draft(m1);
  d2.delete('a');
  d2.set('d', 6);
  d2.set('a', 7);
  assert.deepEqual([...d2.done()], [['b', 5], ['c', 3], ['d', 6], ['a', 7]]);
  assert.deepEqual([...m1], [['b', 5], ['c', 3], ['a', 4]], 'the earlier map is unchanged');
});
