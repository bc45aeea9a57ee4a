#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (built by `npm ci` through the prepare script).
import('../dist/src/cli/main.js').then(
  (m) => m.main(process.argv.slice(2)),
).then(
  (code) => process.exit(typeof code === 'number' ? code : 0),
  (err) => {
    console.error(`kproxy: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  },
);
