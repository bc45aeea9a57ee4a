/**
 * The test API server (test/helpers/apiserver.ts) as a child process, so that it can run inside
 * a bench namespace, where kproxy reaches it on 127.0.0.1. Usage:
 *   node dist/bench/apiserver-proc.js OBJECTS.json KUBECONFIG
 * loads the objects (a JSON array), writes a kubeconfig for itself, prints `ready`, then applies
 * each JSON object read from stdin (one per line) and prints `applied <resourceVersion>`.
 * Exits when stdin closes.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { TestApiServer } from '../test/helpers/apiserver.js';

async function main(): Promise<void> {
  const [objectsPath, kubeconfig] = process.argv.slice(2);
  if (objectsPath === undefined || kubeconfig === undefined) throw new Error('usage: apiserver-proc OBJECTS.json KUBECONFIG');
  const server = await TestApiServer.start();
  for (const o of JSON.parse(readFileSync(objectsPath, 'utf8')) as Record<string, unknown>[]) server.apply(o);
  server.writeKubeconfig(kubeconfig);
  process.stdout.write('ready\n');
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() === '') continue;
    server.apply(JSON.parse(line) as Record<string, unknown>);
    process.stdout.write(`applied ${server.resourceVersion}\n`);
  }
  await server.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`apiserver-proc: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
