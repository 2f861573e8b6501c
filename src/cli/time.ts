/** Time arguments (`--since 2h`, `--until 2026-11-28T09:00:00Z`) and human renderings of time. */
import { UsageError } from '../errors.js';
import { parseDuration } from '../units.js';

// RFC 3339 date-time (offset required) or a full-date, which means midnight UTC.
const RFC3339 = /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2}))?$/;

/**
 * Accepts RFC 3339 (`2026-11-28T09:00:00Z`, `2026-11-28`) or a span back from now in the config
 * file's duration grammar (`90s`, `15m`, `2h`, `7d`, `2w`, also `1h30m`). Returns RFC 3339 UTC
 * with milliseconds.
 */
export function parseTimeArg(value: string, flag: string, now: Date): string {
  const v = value.trim();
  const span = parseDuration(v);
  if (span !== null) return new Date(now.getTime() - span).toISOString();
  if (RFC3339.test(v)) {
    const t = Date.parse(v.length === 10 ? `${v}T00:00:00Z` : v);
    if (!Number.isNaN(t)) return new Date(t).toISOString();
  }
  throw new UsageError(`invalid ${flag} '${value}': use RFC 3339 (2026-11-28T09:00:00Z) or a span like 2h or 7d`);
}

export function formatRelative(iso: string, now: Date): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const d = Math.round((now.getTime() - t) / 1_000);
  if (d < 0) return 'in the future';
  if (d < 60) return 'just now';
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'} ago`;
  if (d < 3_600) return plural(Math.floor(d / 60), 'minute');
  if (d < 86_400) return plural(Math.floor(d / 3_600), 'hour');
  if (d < 86_400 * 30) return plural(Math.floor(d / 86_400), 'day');
  return iso.slice(0, 10);
}

/** `2026-11-28 09:00:01Z`: exact, sortable, shorter than ISO. */
export function formatTimestamp(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
