#!/usr/bin/env node
// Thin shim: refuse unsupported Node versions with a clear message, then run the built CLI.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  process.stderr.write(`hoop needs Node.js 20.19 or newer (this is ${process.versions.node}).\n`);
  process.exit(1);
}
import('../dist/cli/main.js').then(
  (m) => m.main(process.argv),
  (err) => {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
      process.stderr.write('hoop is not built: run `npm run build` in the hoop checkout.\n');
    } else {
      process.stderr.write(`hoop: ${err && err.message ? err.message : err}\n`);
    }
    process.exit(1);
  },
);
