/**
 * `npm start`: starts the bundled example's demo pods on loopback and runs kproxy in userspace
 * mode on examples/demo.yaml. No root, no cluster.
 */
import { fileURLToPath } from 'node:url';
import { startHttpPod, startUdpEchoPod, type DemoPod } from './demo-backends.js';
import { main } from './main.js';

const manifest = fileURLToPath(new URL('../../../examples/demo.yaml', import.meta.url));

async function run(): Promise<number> {
  const pods: DemoPod[] = [];
  try {
    for (const [i, ip] of ['127.0.20.1', '127.0.20.2', '127.0.20.3'].entries()) {
      pods.push(await startHttpPod(`pod-${i + 1}`, ip, 9001));
      if (i < 2) pods.push(await startUdpEchoPod(`pod-${i + 1}`, ip, 9053));
    }
  } catch (err) {
    process.stderr.write(`demo: cannot start the demo pods on 127.0.20.x: ${err instanceof Error ? err.message : String(err)}\n`);
    for (const p of pods) await p.close();
    return 1;
  }
  process.stdout.write(`
kproxy demo: 3 pods (127.0.20.1-3) behind 4 Services, userspace mode, manifests in
  ${manifest}

Try, in another terminal:
  for i in 1 2 3 4 5 6; do curl -s http://127.0.10.1:8080/; done   # web: round robin (rr)
  for i in 1 2 3 4 5 6; do curl -s http://127.0.10.2:8080/; done   # web-weighted: wrr 3:2:1
  for i in 1 2 3; do curl -s http://127.0.10.3:8080/; done         # web-sticky: ClientIP affinity
  echo hi | nc -u -w1 127.0.10.4 5353                              # echo: UDP
  curl -s http://127.0.0.1:10256/healthz ; curl -s http://127.0.0.1:10249/metrics | grep kproxy_
Edit the manifest (remove an endpoint, add a Service) and watch it apply. Ctrl-C stops.

`);
  const extra = process.argv.slice(2);
  const code = await main(['--proxy-mode', 'userspace', '--manifests', manifest, '--hostname-override', 'laptop', '-v', '2', ...extra]);
  for (const p of pods) await p.close();
  return code;
}

run().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`demo: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
