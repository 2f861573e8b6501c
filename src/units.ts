/**
 * The value grammars that neither YAML nor a command line has a type for, shared by the config
 * file (`max_session: 8h`, `payload_limit: 10MiB`) and the CLI (`--since 90m`): durations and
 * byte sizes. Each parser returns null on anything it does not fully understand, so the caller
 * can name the key path or the flag. And the one rendering of a duration for people.
 */

/** `y` is 365 days (retention periods: `audit.retention.events: 7y`). */
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };

/** Milliseconds of a duration such as `8h`, `30m`, `1h30m`, `45s`, `500ms`, `2d`, `2w`, `7y`; null if malformed. */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  if (!/^(\d+(ms|s|m|h|d|w|y))+$/.test(s)) return null;
  let total = 0;
  for (const m of s.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return Number.isSafeInteger(total) ? total : null;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};

/** Bytes of a size such as `10MiB`, `512KiB`, `1MB`, `65536`; null if malformed. */
export function parseSize(text: string | number): number | null {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : null;
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return null;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/**
 * A duration for people, statement timings and configured limits alike, in a width that suits
 * a table column: `0.50 ms`, `12 ms`, `1.5 s`, then the two largest units, `5m 0s`, `2h 5m`,
 * `1d 2h` (rounded, so `1d2h3m` shows as `1d 2h`); `-` for what is not a duration.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 999.5) return `${Math.round(ms)} ms`;
  if (ms < 59_950) return `${(ms / 1_000).toFixed(1)} s`;
  const s = Math.round(ms / 1_000);
  if (s < 3_600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  const m = Math.floor(s / 60);
  if (m < 1_440) return `${Math.floor(m / 60)}h ${m % 60}m`;
  return `${Math.floor(m / 1_440)}d ${Math.floor((m % 1_440) / 60)}h`;
}

/**
 * A duration to suggest on a command line (`hoop request bank --duration 1h`) that does not
 * exceed `maxMs`: 1h, or the whole minutes (else seconds) of a shorter maximum, in the syntax
 * parseDuration reads.
 */
export function suggestedDuration(maxMs: number): string {
  if (maxMs >= 3_600_000) return '1h';
  if (maxMs >= 60_000) return `${Math.floor(maxMs / 60_000)}m`;
  return `${Math.max(1, Math.floor(maxMs / 1_000))}s`;
}
