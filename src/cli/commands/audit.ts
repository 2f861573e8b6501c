/** `hoop audit events`: recorded events by type and time, for auditors and admins. */
import { EVENT_TYPE_PATTERN, type AuditEvent } from '../../api/types.js';
import { UsageError } from '../../errors.js';
import { defineCommand, opt, type CommandGroup } from '../command.js';
import type { CommandContext } from '../context.js';
import { printTable } from '../output.js';
import { formatRelative, parseTimeArg } from '../time.js';
import { auditKeysCommand, auditVerifyCommand } from './audit-verify.js';
import { parseLimit } from './sessions.js';
import { auditExportCommand } from './audit-export.js';

const DEFAULT_LIMIT = 50;

export function parseTypes(raw: string): string[] {
  const types = raw.split(',').map((t) => t.trim()).filter((t) => t !== '');
  const bad = types.find((t) => !EVENT_TYPE_PATTERN.test(t));
  if (types.length === 0 || bad !== undefined) {
    throw new UsageError(`invalid --type '${raw}': expected event types separated by commas, e.g. access.denied,auth.failed or auth.*`);
  }
  return types;
}

export const auditEventsCommand = defineCommand({
  name: 'events',
  summary: 'List recorded events by type, newest first (auditors and admins)',
  description:
    'List audit events, newest first: refusals (access.denied), failed authentications (auth.failed),\n' +
    'sessions, statements, reads of the log itself (audit.read). Times accept RFC 3339 or a span back\n' +
    'from now (30m, 24h, 7d). Reading the log is itself recorded.',
  options: {
    type: opt.optionalParsed('--type <types>', 'only these event types, comma-separated (a family: auth.*)', parseTypes),
    since: opt.text('--since <time>', 'events at or after this time'),
    until: opt.text('--until <time>', 'events before this time'),
    limit: opt.parsed('--limit <n>', 'show at most this many events', parseLimit, DEFAULT_LIMIT),
  },
  examples: ['hoop audit events --type access.denied,auth.failed --since 24h', 'hoop audit events --type auth.* --since 7d --json | jq -r \'.[].data.reason\''],
  async run(ctx, { options }) {
    const now = ctx.now();
    const since = options.since === undefined ? undefined : parseTimeArg(options.since, '--since', now);
    const until = options.until === undefined ? undefined : parseTimeArg(options.until, '--until', now);
    if (since && until && since >= until) throw new UsageError(`--since (${since}) must be before --until (${until})`);
    // Page by page (the gateway bounds each by bytes), until --limit events or the end; each page
    // is printed (JSON) or reduced to its table row before the next is fetched.
    const pages = ctx.api().auditEventPages({ type: options.type, since, until, limit: options.limit });
    if (ctx.globals.json) return printJsonArray(ctx, pages);
    const rows: EventRow[] = [];
    for await (const page of pages) rows.push(...page.map((e) => eventRow(ctx, e)));
    renderEvents(ctx, rows, options.limit);
  },
});

/**
 * One JSON array, written a page at a time with one event per line (`[e1`, `,e2`, …, `]`), so
 * neither the CLI nor the pipe holds more than a page; on a terminal each event is indented.
 */
async function printJsonArray(ctx: CommandContext, pages: AsyncIterable<AuditEvent[]>): Promise<void> {
  const { io } = ctx;
  const pretty = io.isStdoutTTY;
  let n = 0;
  for await (const page of pages) {
    for (const e of page) io.print(`${n++ === 0 ? '[' : ','}${pretty ? JSON.stringify(e, null, 2) : JSON.stringify(e)}`);
    await io.drained();
  }
  io.print(n === 0 ? '[]' : ']');
}

export const auditCommand = defineCommand({
  name: 'audit',
  summary: 'Read the audit log',
  subcommands: [auditEventsCommand, auditExportCommand, auditVerifyCommand, auditKeysCommand],
});

type EventRow = ReturnType<typeof eventRow>;

/** An event's table row: a few short cells, so a listing keeps rows, not events. */
function eventRow(ctx: CommandContext, e: AuditEvent) {
  const cs = ctx.io.out;
  return [
    ctx.io.isStdoutTTY ? formatRelative(e.time, ctx.now()) : e.time,
    { text: e.type, style: e.type === 'access.denied' || e.type === 'auth.failed' ? cs.red : (s: string) => s },
    e.actor ? (e.actor.email ?? e.actor.subject) : '-',
    e.connection ?? '',
    sourceText(e),
    detailOf(e),
  ];
}

function renderEvents(ctx: CommandContext, rows: EventRow[], limit: number): void {
  const { io } = ctx;
  if (rows.length === 0) {
    io.info('No events match.');
    return;
  }
  printTable(io, ['TIME', 'TYPE', 'WHO', 'CONNECTION', { title: 'SOURCE', optional: true }, 'DETAIL'], rows);
  if (rows.length >= limit) io.info(io.err.dim(`Showing the newest ${limit}; narrow with --type/--since/--until or raise --limit.`));
}

function sourceText(e: AuditEvent): string {
  const s = e.source;
  if (!s) return '';
  return [s.address, s.proxy ? `via ${s.proxy}` : null].filter(Boolean).join(' ');
}

/** One line saying what happened, per type; anything else as compact JSON. */
export function detailOf(e: AuditEvent): string {
  const d = e.data;
  const text = (v: unknown) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v));
  let out: string;
  switch (e.type) {
    case 'access.denied':
      out = `${text(d['stage'])}: ${text(d['reason'])}`;
      break;
    case 'auth.failed':
      out = [text(d['reason']), d['path'] ? `(${text(d['path'])})` : ''].filter(Boolean).join(' ');
      break;
    case 'audit.read':
      out = `${text(d['events'])} events, filter ${text(d['filter'])}`;
      break;
    case 'query.start':
      out = text(d['statement']);
      break;
    case 'audit.pruned':
      out = d['kind'] === 'events'
        ? `retention: ${text(d['count'])} events before ${text(d['before'])} (seq ${text(d['first_seq'])}-${text(d['last_seq'])}); the log starts at seq ${text(d['new_first_seq'])}`
        : `retention: ${text(d['count'])} payloads of events before ${text(d['before'])} (seq ${text(d['first_seq'])}-${text(d['last_seq'])})`;
      break;
    case 'session.start':
      out = d['reason'] ? `reason: ${text(d['reason'])}` : text(d['user']);
      break;
    case 'session.end':
      out = text(d['reason']);
      break;
    default:
      out = JSON.stringify(d) ?? '';
  }
  out = out.replace(/\s+/g, ' ').trim();
  return out.length > 200 ? `${out.slice(0, 199)}…` : out;
}

export const commands: CommandGroup['commands'] = [auditCommand];
