/**
 * The benches' synthetic cluster generator: deterministic output (golden), the promised mix of
 * service shapes, only benchmarking addresses, objects kproxy accepts, and a manifest layout the
 * manifest parser reads back whole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCluster, sliceFileOf, toSourceEvents, writeManifests, type Raw } from '../../bench/cluster-gen.js';
import { parseCIDR } from '../../src/core/ip.js';
import { parseManifests } from '../../src/sources/files/parse.js';
import { assertGolden } from '../helpers/golden.js';

test('cluster-gen: 24 services × 2 endpoints, golden', () => {
  assertGolden('bench/cluster-24x2.json', JSON.stringify(generateCluster({ services: 24, endpointsPerService: 2 }), null, 1) + '\n');
});

test('cluster-gen: the mix of shapes, node ports used once, benchmarking addresses only, accepted by kproxy', () => {
  const c = generateCluster({ services: 3000, endpointsPerService: 3 });
  const spec = (s: Raw): Raw => s.spec as Raw;
  const count = (pred: (s: Raw) => boolean): number => c.services.filter(pred).length;
  assert.equal(count((s) => spec(s).type === 'LoadBalancer'), 150);
  assert.ok(count((s) => spec(s).type === 'NodePort') >= 500, 'about 20% NodePort');
  assert.equal(count((s) => spec(s).sessionAffinity === 'ClientIP'), Math.ceil(3000 / 7));
  assert.equal(count((s) => (spec(s).ports as Raw[])[0]?.protocol === 'UDP'), 300);
  assert.equal(count((s) => spec(s).externalTrafficPolicy === 'Local'), 38);
  assert.equal(count((s) => Array.isArray(spec(s).loadBalancerSourceRanges)), 75);
  const nodePorts = c.services.flatMap((s) => [...(spec(s).ports as Raw[]).map((p) => p.nodePort), spec(s).healthCheckNodePort].filter((p) => p !== undefined));
  assert.equal(new Set(nodePorts).size, nodePorts.length, 'no node port twice');
  const range = parseCIDR('198.18.0.0/15');
  const ips = JSON.stringify(c).match(/\d+\.\d+\.\d+\.\d+/g) ?? [];
  assert.ok(ips.length > 9000);
  for (const ip of ips) assert.ok(range?.contains(ip), `${ip} is outside 198.18.0.0/15`);
  assert.equal(toSourceEvents([...c.services, ...c.slices]).length, 6000);
  assert.throws(() => generateCluster({ services: 50_000, endpointsPerService: 1 }), /services must be/);
});

test('cluster-gen: the manifest folder holds every object once', () => {
  const c = generateCluster({ services: 120, endpointsPerService: 2 });
  const dir = mkdtempSync(join(tmpdir(), 'kproxy-cluster-gen-'));
  try {
    writeManifests(c, dir);
    const files = readdirSync(dir).sort();
    assert.ok(files.includes(sliceFileOf(119)));
    let objects = 0;
    for (const f of files) {
      const r = parseManifests(readFileSync(join(dir, f), 'utf8'), f);
      assert.ok(r.ok, f);
      if (r.ok) objects += r.documents.length;
    }
    assert.equal(objects, 240);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
