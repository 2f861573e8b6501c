/**
 * The agent's allow-list: the only targets it dials, whatever a gateway asks. Entries are exact
 * `HOST:PORT` pairs (`db.internal:5432`, `10.0.0.5:5432`, `[fd00::5]:5432`); host names compare
 * case-insensitively and are resolved by the agent only after the match, so a name on the list
 * reaches whatever that name means inside the agent's network and nothing else. No wildcards:
 * a compromised gateway must not be able to scan the network behind the agent.
 */
import { UsageError } from '../errors.js';
import type { Target } from './mux.js';

export class AllowList {
  private readonly entries: Set<string>;

  constructor(readonly targets: readonly Target[]) {
    this.entries = new Set(targets.map(keyOf));
  }

  allows(t: Target): boolean {
    return this.entries.has(keyOf(t));
  }

  get size(): number {
    return this.entries.size;
  }
}

function keyOf(t: Target): string {
  return `${t.host.toLowerCase().replace(/^\[(.*)\]$/, '$1')}\u0000${t.port}`;
}

/** One `HOST:PORT` (IPv6 in brackets). */
export function parseTarget(raw: string, from: string): Target {
  const s = raw.trim();
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([A-Za-z0-9._-]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(`invalid allow-list entry ${JSON.stringify(s.slice(0, 80))} (from ${from}): expected HOST:PORT, e.g. db.internal:5432 or [fd00::5]:5432`);
  }
  return { host: m[1]!, port };
}

/** `--allow` values, else the comma-separated HOOP_AGENT_ALLOW. */
export function allowListFrom(flags: readonly string[], env: string | undefined): AllowList {
  const raw = flags.length > 0 ? flags.map((f) => [f, '--allow'] as const) : (env ?? '').split(',').filter((e) => e.trim() !== '').map((e) => [e, 'HOOP_AGENT_ALLOW'] as const);
  return new AllowList(raw.map(([v, from]) => parseTarget(v, from)));
}
