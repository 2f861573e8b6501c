/** What the benchmark scripts share: the built code, settings from the environment, cleanup. */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const distDir = resolve(root, process.env.BENCH_DIST || 'dist');

/** Imports a module of the built code (dist/, or BENCH_DIST for another build of src/). */
export const dist = (p) => import(pathToFileURL(join(distDir, p)).href);

/** An environment setting, with a default for unset or empty. */
export function env(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

export const log = (msg) => process.stderr.write(`${msg}\n`);

/** Undo actions, last in first out; run once, at the end or on a signal. */
export const cleanups = [];
let cleaning = null;
export function cleanup() {
  cleaning ??= (async () => {
    for (let c = cleanups.pop(); c; c = cleanups.pop()) {
      try {
        await c();
      } catch (err) {
        log(`bench: cleanup failed: ${err?.message ?? err}`);
      }
    }
  })();
  return cleaning;
}
/** Ctrl-C or SIGTERM: undo everything, then exit. */
export function cleanupOnSignals() {
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      log(`bench: ${sig}, cleaning up`);
      void cleanup().then(() => process.exit(130));
    });
  }
}
