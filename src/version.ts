/** The running hoop's version (package.json), for `hoop --version`, exports and bundles. */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function hoopVersion(): string {
  if (cached !== undefined) return cached;
  try {
    // src/version.ts and dist/version.js both sit one level below the package root.
    cached = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    cached = '0.0.0';
  }
  return cached;
}
