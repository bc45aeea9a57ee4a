import { test } from 'node:test';
import assert from 'node:assert/strict';
import { servicePortName, namespacedName } from '../../src/core/ids.js';
import { SnapshotBuilder } from '../../src/core/snapshot.js';
import { ChangeTracker } from '../../src/core/tracker.js';
import { categorizeEndpoints } from '../../src/core/traffic-policy.js';
import { ep, slice, svc } from '../helpers/objects.js';

const WEB = servicePortName(namespacedName('ns1', 'web'), 'http');

test('tracker drops changes that net to nothing', () => {
  const t = new ChangeTracker<string, ReturnType<typeof svc>>();
  const a = svc('ns1', 'web');
  assert.equal(t.record('k', undefined, a), true);
  assert.equal(t.record('k', a, undefined), false, 'add then delete is no change');
  assert.equal(t.size, 0);
  const b = svc('ns1', 'web', { clusterIP: '198.18.100.2' });
  t.record('k', a, b);
  assert.equal(t.record('k', b, { ...a, origin: { source: 'elsewhere' } }), false, 'update and revert (origin ignored) is no change');
  t.record('k', a, b);
  const drained = t.drain();
  assert.deepEqual([...drained.keys()], ['k']);
  assert.equal(drained.get('k')?.previous, a);
  assert.equal(drained.get('k')?.current, b);
  assert.equal(t.size, 0);
});

test('snapshot: endpoints in slice-name order, first address only, duplicates dropped, isLocal by node name', () => {
  const b = new SnapshotBuilder('node-a');
  b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'web-b', 'web', [ep('198.18.0.3', { nodeName: 'node-a' }), ep('198.18.0.1')]) });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'web-a', 'web', [{ ...ep('198.18.0.2'), addresses: ['198.18.0.2', '198.18.0.9'] }]) });
  const s = b.next();
  assert.equal(s.full, true);
  assert.deepEqual(s.endpoints.get(WEB)?.map((e) => e.key), ['198.18.0.2:8080', '198.18.0.3:8080', '198.18.0.1:8080']);
  assert.deepEqual(s.endpoints.get(WEB)?.map((e) => e.isLocal), [false, true, false]);
  assert.deepEqual([...s.changed], [WEB]);
});

test('snapshot: partial changes name only the service ports that changed; removals are reported', () => {
  const b = new SnapshotBuilder('n');
  b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'db', { clusterIP: '198.18.100.2' }) });
  const s1l = slice('ns1', 'web-1', 'web', [ep('198.18.0.1'), ep('198.18.0.2')]);
  b.handle({ kind: 'EndpointSlice', type: 'add', object: s1l });
  b.next();
  assert.equal(b.pending, false);
  const s1m = slice('ns1', 'web-1', 'web', [ep('198.18.0.2')]);
  b.handle({ kind: 'EndpointSlice', type: 'update', previous: s1l, object: s1m });
  const s2 = b.next();
  assert.equal(s2.full, false);
  assert.deepEqual([...s2.changed], [WEB]);
  assert.deepEqual(s2.removedEndpoints.get(WEB)?.map((e) => e.key), ['198.18.0.1:8080']);
  assert.equal(s2.servicePorts.size, 2);
  b.handle({ kind: 'Service', type: 'delete', object: svc('ns1', 'web') });
  const s3 = b.next();
  assert.deepEqual([...s3.changed], [WEB]);
  assert.ok(s3.removed.has(WEB));
  assert.equal(s3.servicePorts.has(WEB), false);
  assert.equal(s3.endpoints.has(WEB), false);
  assert.equal(s2.servicePorts.has(WEB), true, 'earlier snapshots are not mutated');
});

test('snapshot: headless and ExternalName services have no service ports; port renames remove the old port', () => {
  const b = new SnapshotBuilder('n');
  b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'headless', { clusterIP: 'None', clusterIPs: ['None'] }) });
  b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'ext', { type: 'ExternalName' }) });
  const web = svc('ns1', 'web');
  b.handle({ kind: 'Service', type: 'add', object: web });
  assert.deepEqual([...b.next().servicePorts.keys()], [WEB]);
  const renamed = svc('ns1', 'web', { ports: [{ name: 'https', protocol: 'TCP', port: 443, targetPort: 8443, nodePort: 0 }] });
  b.handle({ kind: 'Service', type: 'update', previous: web, object: renamed });
  const s = b.next();
  assert.deepEqual([...s.servicePorts.keys()], ['ns1/web:https']);
  assert.deepEqual([...s.changed].sort(), ['ns1/web:http', 'ns1/web:https']);
});

test('traffic policy: ready endpoints, else serving-terminating ones; Local policies use local endpoints', () => {
  const b = new SnapshotBuilder('me');
  const service = svc('ns1', 'web', { type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] });
  b.handle({ kind: 'Service', type: 'add', object: service });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [
    ep('198.18.0.1', { ready: false, serving: true, terminating: true, nodeName: 'me' }),
    ep('198.18.0.2', { nodeName: 'other' }),
    ep('198.18.0.3', { ready: false, serving: false, terminating: true }),
  ]) });
  const s = b.next();
  const sp = s.servicePorts.get(WEB);
  assert.ok(sp);
  const c = categorizeEndpoints(sp, s.endpoints.get(WEB) ?? []);
  assert.deepEqual(c.clusterEndpoints.map((e) => e.ip), ['198.18.0.2'], 'a ready endpoint exists: terminating ones are not used');
  assert.deepEqual(c.localEndpoints.map((e) => e.ip), ['198.18.0.1'], 'no ready local endpoint: fall back to serving+terminating');
  assert.deepEqual(c.internalEndpoints.map((e) => e.ip), ['198.18.0.2']);
  assert.deepEqual(c.externalEndpoints.map((e) => e.ip), ['198.18.0.1']);
});

test('weights annotation sets endpoint weights (default 1)', () => {
  const b = new SnapshotBuilder('n');
  b.handle({ kind: 'Service', type: 'add', object: svc('ns1', 'web') });
  b.handle({ kind: 'EndpointSlice', type: 'add', object: slice('ns1', 'w', 'web', [ep('198.18.0.1'), ep('198.18.0.2')], { annotations: { 'kproxy.io/weights': '{"198.18.0.1": 5}' } }) });
  assert.deepEqual(b.next().endpoints.get(WEB)?.map((e) => e.weight), [5, 1]);
});
