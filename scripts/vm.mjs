#!/usr/bin/env node
// The IPVS test VM by hand (after `npm run build`):
//   node scripts/vm.mjs build                 build (or find in the cache) and print the image
//   node scripts/vm.mjs run [--timeout S] [--env K=V]... -- CMD ARGS...
//                                             boot, run CMD in the checkout, print its output
// See test/vm/README.md.
import { buildVm } from '../dist/test/helpers/vm-build.js';
import { runInVm } from '../dist/test/helpers/vm.js';

const [what, ...rest] = process.argv.slice(2);
if (what === 'build') {
  console.log(JSON.stringify(buildVm(), null, 2));
} else if (what === 'run') {
  const sep = rest.indexOf('--');
  const opts = sep < 0 ? [] : rest.slice(0, sep);
  const command = sep < 0 ? rest : rest.slice(sep + 1);
  const env = {};
  let timeoutMs = 600_000;
  for (let i = 0; i < opts.length; i += 2) {
    if (opts[i] === '--env') { const [k, ...v] = String(opts[i + 1]).split('='); env[k] = v.join('='); }
    else if (opts[i] === '--timeout') timeoutMs = Number(opts[i + 1]) * 1000;
    else { console.error(`vm.mjs: unknown option ${opts[i]}`); process.exit(2); }
  }
  if (command.length === 0) { console.error('usage: node scripts/vm.mjs run [--timeout S] [--env K=V]... -- CMD ARGS...'); process.exit(2); }
  const r = await runInVm({ command, env, timeoutMs });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.code !== 0 || process.env.KPROXY_VM_CONSOLE === '1') process.stderr.write(`--- console ---\n${r.console}\n`);
  process.stderr.write(`[kproxy-vm] exit ${r.code}; image ${r.buildMs} ms, qemu ${r.durationMs} ms, guest boot ${r.bootMs} ms, command ${r.commandMs} ms\n`);
  process.exit(r.code);
} else {
  console.error('usage: node scripts/vm.mjs build | run [--timeout S] [--env K=V]... -- CMD ARGS...');
  process.exit(2);
}
