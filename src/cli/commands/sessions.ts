/** `hoop sessions` and `hoop sessions show <id>`: the recorded sessions, and one session's statements. */
import { FULL_SESSION_ID, dataWithPayload, type AuditEvent, type SessionDetail, type SessionSummary } from '../../api/types.js';
import type { QueryEndData } from '../../audit/event.js';
import { HoopError, UsageError } from '../../errors.js';
import { formatDuration } from '../../units.js';
import { arg, defineCommand, opt, type CommandGroup } from '../command.js';
import type { CommandContext } from '../context.js';
import type { ColorScheme, IOStreams } from '../iostreams.js';
import { printJson, printTable, sanitize } from '../output.js';
import { catalogRelations, copyFields, copyLayout, type CopyLayout } from '../statement-view.js';
import { formatRelative, formatTimestamp, parseTimeArg } from '../time.js';

const DEFAULT_LIMIT = 50;

/** `--limit` of a listing (sessions, audit events): 1 to 1000, as the gateway takes it. */
export function parseLimit(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 1_000) throw new UsageError(`invalid --limit '${raw}': expected a whole number from 1 to 1000`);
  return n;
}

export const sessionsShowCommand = defineCommand({
  name: 'show',
  summary: 'Show one session: each statement with timing, outcome, rows and returned data',
  args: [arg('id', 'session id, or its first characters (from `hoop sessions`)')],
  options: {
    rows: opt.parsed('--rows <n>', 'rows of returned data to show per statement', parseRows, 5),
    full: opt.flag('--full', 'print whole values (by default cells are cut at 32 characters)'),
    catalog: opt.flag('--catalog', 'show the catalog queries psql sends for \\d, \\dt, ... in full (by default one line each)'),
  },
  examples: ['hoop sessions show 0193a5c2-7c1e-4a10-9f1e-2b1c3d4e5f60', 'hoop sessions show 0193a5c2', 'hoop sessions show <id> --json | jq \'.events[] | select(.type == "query.start") | .data.statement\''],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    const id = await resolveSessionId(ctx, String(args.id));
    // Page by page (the gateway bounds each by count and bytes), printed as it comes: memory
    // stays bounded whatever the session's size.
    const pages = api.sessionPages(id);
    const first = await pages.next();
    if (first.done) throw new HoopError('HOOP_NOT_FOUND', `no session ${id}`);
    if (ctx.globals.json) {
      const out = new SessionJsonWriter(ctx.io, first.value.session);
      out.add(first.value.events);
      for await (const page of pages) {
        await ctx.io.drained();
        out.add(page.events);
      }
      out.end();
      return;
    }
    const endPager = ctx.io.startPager();
    try {
      const r = new SessionRenderer(ctx.io, first.value, { rows: options.rows, full: options.full, catalog: options.catalog });
      for await (const page of pages) {
        await ctx.io.drained();
        r.add(page.events);
      }
      r.finish();
    } finally {
      await endPager();
    }
  },
});

/**
 * `hoop sessions show --json`, written as the pages come: the same document as
 * `JSON.stringify({ session, events, next: null })` (indented on a terminal), never all held at once.
 */
export class SessionJsonWriter {
  private count = 0;
  private readonly pretty: boolean;

  constructor(private readonly io: IOStreams, session: SessionSummary) {
    this.pretty = io.isStdoutTTY;
    const head = this.pretty ? `{\n  "session": ${indentJson(session, '  ')},\n  "events": [` : `{"session":${JSON.stringify(session)},"events":[`;
    io.stdout.write(head);
  }

  add(events: readonly AuditEvent[]): void {
    for (const e of events) {
      const sep = this.count++ === 0 ? '' : ',';
      this.io.stdout.write(this.pretty ? `${sep}\n    ${indentJson(e, '    ')}` : `${sep}${JSON.stringify(e)}`);
    }
  }

  end(): void {
    const close = this.pretty ? `${this.count ? '\n  ' : ''}],\n  "next": null\n}` : '],"next":null}';
    this.io.print(close);
  }
}

function indentJson(value: unknown, indent: string): string {
  return JSON.stringify(value, null, 2).replace(/\n/g, `\n${indent}`);
}

export const sessionsKillCommand = defineCommand({
  name: 'kill',
  summary: 'End a live session on whichever gateway holds it (admins)',
  description: 'End a live session (admins only). The session\'s client gets a FATAL naming you and the reason;\nwhat runs upstream is cancelled; the kill and the end are recorded. With several gateway\nreplicas on one PostgreSQL store, any of them takes the request.',
  args: [arg('id', 'session id, or its first characters (from `hoop sessions`)')],
  options: {
    reason: opt.text('--reason <text>', 'why; shown to the session\'s user and recorded'),
  },
  examples: ['hoop sessions kill 0193a5c2 --reason "runaway export, see INC-7"'],
  async run(ctx, { args, options }) {
    const api = ctx.api();
    // The gateway decides; asking first gives a non-admin the same answer for any id (exit 5).
    const { roles } = await api.me();
    if (!Array.isArray(roles) || !roles.includes('admin')) throw new HoopError('HOOP_FORBIDDEN', 'only admins may end sessions', { hint: 'ask an administrator (roles.admin in the gateway config)' });
    const id = await resolveSessionId(ctx, String(args.id));
    const result = await api.killSession(id, options.reason);
    if (ctx.globals.json) return printJson(ctx.io, result);
    const { io } = ctx;
    if (result.ended_at) io.info(`${io.err.green('✓')} Session ${id} ended (killed by ${sanitize(result.requested_by)}${result.reason ? `: ${sanitize(result.reason)}` : ''}).`);
    else io.info(`Session ${id}: kill requested by ${sanitize(result.requested_by)}; the gateway holding it has not recorded its end yet.\n${io.err.dim('Check with `hoop sessions show ' + id.slice(0, SHORT_ID_LENGTH) + '`.')}`);
  },
});

/** What the session list shows of an id on a terminal; `sessions show` takes it back. */
const SHORT_ID_LENGTH = 8;

/** A full id as given; a shorter start of one, looked up among the sessions the caller may read. */
async function resolveSessionId(ctx: CommandContext, given: string): Promise<string> {
  const id = given.toLowerCase();
  if (FULL_SESSION_ID.test(id)) return id;
  if (!/^[0-9a-f][0-9a-f-]{3,34}$/.test(id)) {
    throw new UsageError(`invalid session id '${given.slice(0, 40)}': expected a session id or at least its first 4 characters`);
  }
  const found = await ctx.api().sessions({ id_prefix: id, limit: 10 });
  if (found.length === 1) return found[0]!.id;
  if (found.length === 0) throw new HoopError('HOOP_NOT_FOUND', `no session starts with ${id}`, { hint: 'list them with `hoop sessions`' });
  throw new UsageError(`session id ${id} is ambiguous: ${found.map((s) => s.id).join(', ')}${found.length === 10 ? ', …' : ''}`, { hint: 'type more of it' });
}

function parseRows(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 1_000) throw new UsageError(`invalid --rows '${raw}': expected a whole number from 0 to 1000`);
  return n;
}

export const sessionsCommand = defineCommand({
  name: 'sessions',
  summary: 'List recorded sessions',
  description: 'List recorded sessions, newest first. Times accept RFC 3339 (2026-11-28T09:00:00Z, 2026-11-28)\nor a span back from now (30m, 2h, 7d).',
  options: {
    user: opt.text('--user <user>', 'only sessions of this user: subject, email or API key name (others\' sessions: admins and auditors only)'),
    connection: opt.text('--connection <name>', 'only sessions on this connection', { complete: 'connections' }),
    since: opt.text('--since <time>', 'sessions started at or after this time'),
    until: opt.text('--until <time>', 'sessions started before this time'),
    limit: opt.parsed('--limit <n>', 'show at most this many sessions', parseLimit, DEFAULT_LIMIT),
  },
  examples: ['hoop sessions --since 2h', 'hoop sessions --user alice@bank.example --connection bank --since 7d', 'hoop sessions --since 2026-11-01 --until 2026-12-01 --json'],
  subcommands: [sessionsShowCommand, sessionsKillCommand],
  async run(ctx, { options }) {
    const now = ctx.now();
    const since = options.since === undefined ? undefined : parseTimeArg(options.since, '--since', now);
    const until = options.until === undefined ? undefined : parseTimeArg(options.until, '--until', now);
    if (since && until && since >= until) throw new UsageError(`--since (${since}) must be before --until (${until})`);
    const list = (await ctx.api().sessions({ user: options.user, connection: options.connection, since, until, limit: options.limit }))
      // The gateway may not honour every filter or the limit; the CLI's contract does not change.
      .slice(0, options.limit);
    if (ctx.globals.json) return printJson(ctx.io, list);
    renderSessionList(ctx, list, options.limit);
  },
});

function renderSessionList(ctx: CommandContext, list: SessionSummary[], limit: number): void {
  const { io } = ctx;
  if (list.length === 0) {
    io.info('No sessions match.');
    return;
  }
  const cs = io.out;
  const now = ctx.now();
  const tty = io.isStdoutTTY;
  printTable(
    io,
    [{ title: 'ID', keep: true }, 'USER', 'CONNECTION', 'STARTED', 'DURATION', 'STATEMENTS', { title: 'CLIENT', optional: true }, { title: 'END', optional: true }, { title: 'REASON', optional: true }],
    list.map((s) => [
      // A terminal gets the short id `sessions show` accepts; a pipe the full one.
      { text: tty ? s.id.slice(0, SHORT_ID_LENGTH) : s.id, style: cs.cyan },
      s.email ?? s.subject,
      s.connection,
      tty ? formatRelative(s.started_at, now) : s.started_at,
      s.ended_at ? formatDuration(Date.parse(s.ended_at) - Date.parse(s.started_at)) : { text: 'active', style: cs.green },
      String(s.statements),
      [s.client_application, s.source_address].filter(Boolean).join(' @ '),
      s.end_reason ?? '',
      s.reason ?? '',
    ]),
  );
  if (list.length >= limit) io.info(io.err.dim(`Showing the first ${limit}; narrow with --since/--user/--connection or raise --limit.`));
}

interface Statement {
  start: AuditEvent;
  end: AuditEvent | null;
}

export interface RenderOptions {
  rows: number;
  /** Whole cells, parameters and uploaded lines instead of cut ones. */
  full?: boolean;
  /** psql's catalog queries in full instead of one line each. */
  catalog?: boolean;
}

/** A whole session at once (a gateway that sent it in one page, tests). */
export function renderSession(io: IOStreams, detail: SessionDetail, o: RenderOptions): void {
  new SessionRenderer(io, { ...detail, next: null }, o).finish();
}

/** Statements held back waiting for their query.end before the oldest is printed without one. */
const MAX_PENDING_STATEMENTS = 1_000;
/** "Other events" lines kept for the end; beyond these only a count (the rest: --json). */
const MAX_OTHER_LINES = 10_000;

/**
 * Prints a session as its pages arrive: the header from the summary and the first page, each
 * statement once its query.end has come (in order), and the other events at the end, one line
 * each. Holds only statements still waiting for their end and those one-line summaries.
 */
export class SessionRenderer {
  private readonly cs: ColorScheme;
  private readonly pending: Statement[] = [];
  private readonly byId = new Map<string, Statement>();
  private readonly other: string[] = [];
  private otherDropped = 0;
  private printed = 0;
  /** Whether the header showed how the session ended (its session.end was in the first page). */
  private readonly endShown: boolean;
  private end: AuditEvent | null = null;

  constructor(private readonly io: IOStreams, first: SessionDetail, private readonly o: RenderOptions) {
    const { session: s, events } = first;
    const cs = (this.cs = io.out);
    const whole = first.next === undefined || first.next === null;
    const who = `${s.email ?? s.subject}${s.groups.length ? ` (${s.groups.join(', ')})` : ''}`;
    const lines: string[] = [];
    lines.push(`${cs.bold('Session')} ${cs.cyan(s.id)}`);
    lines.push(`${cs.dim('Who:')}        ${sanitize(who)}${s.email && s.subject !== s.email ? cs.dim(`  subject ${sanitize(s.subject)}`) : ''}`);
    lines.push(`${cs.dim('Connection:')} ${sanitize(s.connection)}`);
    const start = events.find((e) => e.type === 'session.start');
    // The one-hop path says so (and how the client's password travelled); a tunnel's line stays as it was.
    const via = start?.data.path === 'native' ? `the native listener, ${typeof start.data.tls === 'string' ? start.data.tls : 'no TLS (loopback)'}` : null;
    const from = [s.source_address, s.client_application].filter(Boolean).join(', ');
    if (from || via) lines.push(`${cs.dim('From:')}       ${sanitize([from, via ? `via ${via}` : ''].filter(Boolean).join(' '))}`);
    const ended = s.ended_at
      ? `${formatTimestamp(s.ended_at)} (${formatDuration(Date.parse(s.ended_at) - Date.parse(s.started_at))}${s.end_reason ? `, ${sanitize(s.end_reason)}` : ''})`
      : cs.green('still active');
    lines.push(`${cs.dim('When:')}       ${formatTimestamp(s.started_at)} → ${ended}`);
    // How it ended: what the client was told; the operator's account only if the gateway served it (admins, auditors).
    const end = events.find((e) => e.type === 'session.end');
    this.endShown = end !== undefined;
    lines.push(...this.endLines(end));
    const reason = start?.data.reason;
    if (typeof reason === 'string' && reason) lines.push(`${cs.dim('Reason:')}     ${sanitize(reason)}`);
    // The whole session at hand: count what it holds; else the summary's count (query.start events too).
    const count = whole ? events.filter((e) => e.type === 'query.start').length : s.statements;
    lines.push(`${cs.dim('Statements:')} ${count}`);
    io.print(lines.join('\n'));
    this.subject = s.subject;
    this.add(events);
  }

  private readonly subject: string;

  private endLines(end: AuditEvent | undefined): string[] {
    const cs = this.cs;
    const data = end?.data;
    const lines: string[] = [];
    if (typeof data?.error === 'string' && data.error) lines.push(`${cs.dim('Error:')}      ${cs.red(sanitize(data.error))}`);
    if (typeof data?.detail === 'string' && data.detail) lines.push(`${cs.dim('Detail:')}     ${sanitize(data.detail)}`);
    return lines;
  }

  /** The next page's events, in seq order. */
  add(events: readonly AuditEvent[]): void {
    const cs = this.cs;
    for (const e of events) {
      if (e.type === 'query.start') {
        const st: Statement = { start: e, end: null };
        this.byId.set(String(e.data.query_id ?? ''), st);
        this.pending.push(st);
      } else if (e.type === 'query.end') {
        const st = this.byId.get(String(e.data.query_id ?? ''));
        if (st) st.end = { ...e, data: dataWithPayload(e) }; // the rows it returned are in the payload
      } else if (e.type === 'session.end') {
        this.end ??= e;
      }
      if (!SHOWN_ABOVE.has(e.type)) {
        if (this.other.length >= MAX_OTHER_LINES) {
          this.otherDropped++;
          continue;
        }
        const label = e.type === 'protocol.error' ? cs.red(e.type) : cs.yellow(e.type);
        // Someone else's doing in this session (an admin's kill, later a reviewer's decision): say who.
        const by = e.actor && e.actor.subject !== this.subject ? `${cs.dim('by')} ${sanitize(e.actor.email ?? e.actor.subject)}  ` : '';
        this.other.push(`  ${formatTimestamp(e.time)}  ${label}  ${by}${compact(e.data)}`);
      }
    }
    // In order: each statement once it has its end (or too many wait behind one that has none).
    while (this.pending.length && (this.pending[0]!.end || this.pending.length > MAX_PENDING_STATEMENTS)) this.printNext();
  }

  /** The statements still waiting (printed without an end), the other events, how it ended. */
  finish(): void {
    while (this.pending.length) this.printNext();
    const cs = this.cs;
    if (!this.endShown && this.end) {
      const lines = this.endLines(this.end);
      if (lines.length) this.io.print(`\n${cs.bold('Ended')}\n${lines.join('\n')}`);
    }
    // Approvals, grants, protocol errors...: one line each, so nothing recorded is hidden.
    if (this.other.length) this.io.print(`\n${cs.bold('Other events')}`);
    for (const line of this.other) this.io.print(line);
    if (this.otherDropped) this.io.print(`  ${cs.dim(`… and ${this.otherDropped} more (hoop sessions show --json lists them all)`)}`);
  }

  private printNext(): void {
    const st = this.pending.shift()!;
    const id = String(st.start.data.query_id ?? '');
    if (this.byId.get(id) === st) this.byId.delete(id);
    renderStatement(this.io, this.cs, st, ++this.printed, this.o);
  }
}

const SHOWN_ABOVE = new Set(['session.start', 'session.end', 'query.start', 'query.end']);

function compact(value: unknown, max = 160): string {
  const text = sanitize(JSON.stringify(value) ?? '');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A statement psql sent for a backslash command, ran fine, and is shown as one line (statement-view.ts). */
function foldedCatalog(st: Statement, o: RenderOptions): string[] | null {
  if (o.catalog || !st.end || st.end.data.outcome !== 'ok' || Array.isArray(st.start.data.statements)) return null;
  return catalogRelations(String(st.start.data.statement ?? ''));
}

function renderStatement(io: IOStreams, cs: ColorScheme, st: Statement, n: number, o: RenderOptions): void {
  const maxRows = o.rows;
  const full = o.full === true;
  const start = st.start.data;
  const end = st.end?.data;
  const folded = foldedCatalog(st, o);
  if (folded) {
    const rows = Number(end!.rows);
    io.print(`\n${cs.bold(`#${n}`)}  ${formatTimestamp(st.start.time)}  ${formatDuration(Number(end!.duration_ms))}  ${cs.dim(`catalog query (${plural(rows, 'row')}): ${sanitize(folded.join(', '))}  (--catalog shows it)`)}`);
    return;
  }
  const header = [cs.bold(`#${n}`), formatTimestamp(st.start.time)];
  if (end) {
    header.push(formatDuration(Number(end.duration_ms)), outcomeText(cs, String(end.outcome)));
    const rows = Number(end.rows);
    header.push(`${rows} row${rows === 1 ? '' : 's'}`);
    const tags = end.command_tags as string[] | undefined;
    if (tags?.length) header.push(cs.dim(tags.join(', ')));
  } else {
    header.push(cs.yellow('no end recorded'));
  }
  if (start.protocol === 'extended') header.push(cs.dim('extended'));
  io.print(`\n${header.join('  ')}`);
  const result = end?.result as { sets?: ResultSet[]; truncated?: boolean } | undefined;
  const parts = statementParts(start.statements, end);
  if (parts) {
    // Several statements in one Query: each with what became of it and what it returned.
    parts.forEach((part, i) => {
      io.print(indent(`[${i + 1}] ${cleanSql(part.sql)}`).replace(/\n/g, '\n    '));
      io.print(`      ${part.ran ? cs.dim(`→ ${sanitize(part.status)}`) : cs.yellow(`→ ${part.status}`)}`);
      if (maxRows > 0) renderResultSets(io, cs, (result?.sets ?? []).filter((s) => s.statement === i), Boolean(result?.truncated), maxRows, full, copyLayout(String(part.sql)), '    ');
    });
  } else io.print(indent(cleanSql(String(start.statement ?? ''))));
  if (start.decision && typeof start.decision === 'object') renderDecision(io, cs, start.decision as Record<string, unknown>, end?.masked);
  const params = start.parameters as unknown[] | undefined;
  if (params?.length) io.print(`  ${cs.dim('parameters:')} ${params.map((p, i) => `$${i + 1} = ${formatParam(p, full)}`).join(', ')}`);
  const error = end?.error as { code?: string; message?: string } | null | undefined;
  if (error) io.print(`  ${cs.red('error:')} ${sanitize(`${error.message ?? ''}${error.code ? ` (${error.code})` : ''}`)}`);
  const copy = parts ? null : copyLayout(String(start.statement ?? ''));
  if (end?.payload_pruned === true) io.print(`  ${cs.dim('returned data: pruned by audit retention (its sha256 is kept in the record)')}`);
  if (!parts && maxRows > 0) renderResultSets(io, cs, result?.sets ?? [], Boolean(result?.truncated), maxRows, full, copy);
  if (end?.messages && typeof end.messages === 'object') renderMessages(io, cs, end.messages as RecordedMessages, maxRows);
  if (end?.upload && typeof end.upload === 'object') renderUpload(io, cs, end.upload as RecordedUpload, maxRows, full, copy);
}

/**
 * The decision a statement ran under: masking on its own lines (which columns, by which rule and
 * method, or the group it was waived for; then how many values were masked), the rest compact.
 */
function renderDecision(io: IOStreams, cs: ColorScheme, decision: Record<string, unknown>, masked: unknown): void {
  const { masking, ...rest } = decision;
  const ran = rest['action'] === 'run';
  // A refusal shows whole (its masking part says why); a run shows what is beyond "run".
  if (!ran || Object.keys(rest).length > 1 || !masking) io.print(`  ${cs.dim('decision:')} ${compact(ran ? rest : decision)}`);
  const approval = approvalLine(decision);
  if (approval) io.print(`  ${cs.dim('approval:')} ${approval.ok ? sanitize(approval.text) : cs.yellow(sanitize(approval.text))}`);
  if (!ran || !masking || typeof masking !== 'object') return;
  const m = masking as { waived_for?: string; columns?: { column: string; rule?: string; method?: string; masked?: string; reason?: string }[] };
  if (m.waived_for) io.print(`  ${cs.dim('masking:')} waived for group ${sanitize(m.waived_for)}`);
  const columns = (m.columns ?? []).map((c) => c.masked === 'unknown' ? `${c.column} (unknown: ${c.reason ?? ''})` : `${c.column} ← ${c.rule === 'derived' ? 'derived' : c.rule} (${c.method})`);
  if (columns.length) io.print(`  ${cs.dim('masked columns:')} ${cs.yellow(sanitize(columns.join(', ')))}`);
  if (masked && typeof masked === 'object') {
    const counts = Object.entries(masked as Record<string, number>).map(([label, n]) => `${label} ×${n}`);
    if (counts.length) io.print(`  ${cs.dim('masked values:')} ${sanitize(counts.join(', '))}`);
  }
}

/**
 * A hold or an ahead-of-time approval the statement ran (or was refused) under, as one line:
 * `r-1234abcd (rule full-export) approved by apikey:bob after 12.3 s`. A run keeps it under
 * `approval`, a refused hold under `access`; null when the decision names no request.
 */
export function approvalLine(decision: Record<string, unknown>): { text: string; ok: boolean } | null {
  const found = [decision['approval'], decision['access']].find((a): a is Record<string, unknown> => typeof a === 'object' && a !== null && typeof (a as Record<string, unknown>)['request'] === 'string');
  if (!found) return null;
  const rule = typeof found['rule'] === 'string' ? ` (rule ${found['rule']})` : '';
  const approvers = Array.isArray(found['approvers']) ? found['approvers'].map(String) : [];
  const by = approvers.length > 0 ? ` by ${approvers.join(', ')}` : '';
  const head = `${String(found['request'])}${rule}`;
  if (found['approved_ahead'] === true) return { text: `${head} approved ahead of time${by}`, ok: true };
  const outcome = typeof found['outcome'] === 'string' ? found['outcome'] : null;
  const waited = typeof found['waited_ms'] === 'number' ? ` after ${formatDuration(found['waited_ms'])}` : '';
  if (outcome === null) return { text: `${head} held, no decision recorded`, ok: false };
  if (outcome === 'approved') return { text: `${head} approved${by}${waited}`, ok: true };
  const denier = typeof found['denied_by'] === 'string' ? ` by ${found['denied_by']}` : '';
  return { text: `${head} ${outcome}${outcome === 'denied' ? denier : ''}${waited}`, ok: false };
}

type RecordedMessages = NonNullable<QueryEndData['messages']>;
type RecordedUpload = NonNullable<QueryEndData['upload']>;

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Notices and notifications the client received under the statement: a count, then the first few. */
function renderMessages(io: IOStreams, cs: ColorScheme, m: RecordedMessages, maxRows: number): void {
  const counts = [m.notices ? plural(Number(m.notices), 'notice') : '', m.notifications ? plural(Number(m.notifications), 'notification') : ''].filter(Boolean);
  io.print(`  ${cs.dim('messages:')} ${counts.join(', ') || 'none'}`);
  const kept = Array.isArray(m.kept) ? m.kept : [];
  for (const k of kept.slice(0, maxRows)) {
    if (k.kind === 'notification') {
      io.print(`    ${cs.cyan('NOTIFY')} ${sanitize(`${k.channel} (pid ${k.pid})${k.payload ? `: ${k.payload}` : ''}`)}`);
    } else {
      const extra = [k.detail ? `detail: ${k.detail}` : '', k.hint ? `hint: ${k.hint}` : ''].filter(Boolean).join('; ');
      const label = k.severity === 'WARNING' ? cs.yellow(sanitize(k.severity)) : cs.dim(sanitize(String(k.severity)));
      io.print(`    ${label} ${sanitize(`${k.code}  ${k.message}`)}${extra ? cs.dim(sanitize(`  (${extra})`)) : ''}`);
    }
  }
  const more = Number(m.notices ?? 0) + Number(m.notifications ?? 0) - Math.min(kept.length, maxRows);
  if (maxRows > 0 && more > 0) io.print(cs.dim(`    … ${more} more${m.truncated ? ' (recording truncated at the payload limit)' : ''}`));
}

/** What the client uploaded (COPY FROM STDIN): totals, the data's hash, then its first lines. */
function renderUpload(io: IOStreams, cs: ColorScheme, u: RecordedUpload, maxRows: number, full: boolean, copy: CopyLayout | null): void {
  const copies = Array.isArray(u.copies) ? u.copies : [];
  const formats = [...new Set(copies.map((c) => c.format))].join(', ');
  io.print(`  ${cs.dim('uploaded:')} ${plural(Number(u.rows), 'row')}, ${plural(Number(u.bytes), 'byte')}${formats ? ` (${sanitize(formats)})` : ''}  ${cs.dim(`sha256 ${sanitize(String(u.sha256))}`)}`);
  if (copy?.direction === 'from' && copy.columns) io.print(`  ${cs.dim('columns:')} ${sanitize(copy.columns.join(', '))}`);
  for (const c of copies) {
    if (c.end === 'failed') io.print(`    ${cs.red('CopyFail:')} ${sanitize(c.failure ?? '')}`);
    if (maxRows <= 0) continue;
    const lines = c.format === 'binary' ? [c.data] : c.data.split('\n').slice(0, maxRows + 1);
    const shown = lines.slice(0, maxRows).filter((l, i) => l !== '' || i < lines.length - 1);
    for (const l of shown) io.print(`    ${cs.dim('│')} ${sanitize(!full && l.length > 120 ? `${l.slice(0, 119)}…` : l)}`);
    const rest = Number(c.rows) - shown.length;
    if (c.format !== 'binary' && rest > 0) io.print(cs.dim(`    … ${plural(rest, 'more row')}${c.truncated ? ' (recording truncated at the payload limit)' : ''}`));
  }
}

function cleanSql(sql: string): string {
  return sql.replace(/\r\n?/g, '\n').replace(/[^\S\n]+$/gm, '').trimEnd();
}

interface ResultSet { columns: string[]; rows: (string | null)[][]; tag: string | null; statement?: number }

/**
 * The statements of a multi-statement Query paired with what the server did with each: the i-th
 * completed command is statement i, an error stops the rest. Null when the record has no split or
 * the split does not fit what ran (then the Query is shown whole).
 */
function statementParts(statements: unknown, end: Record<string, unknown> | undefined): { sql: string; status: string; ran: boolean }[] | null {
  if (!Array.isArray(statements) || statements.length < 2 || !end) return null;
  const tags = (end.command_tags as string[] | undefined) ?? [];
  const failed = end.outcome === 'error' || end.outcome === 'cancelled' || end.outcome === 'refused';
  if (tags.length + (failed ? 1 : 0) > statements.length) return null;
  return statements.map((sql, i) => {
    if (i < tags.length) return { sql: String(sql), status: tags[i]!, ran: true };
    if (i === tags.length && failed) return { sql: String(sql), status: `${String(end.outcome)} (below)`, ran: false };
    return { sql: String(sql), status: failed ? 'not run: an earlier statement failed' : 'no command completed', ran: false };
  });
}

/** Result sets shown per statement; a Query of many statements lists the rest as a count. */
const MAX_SETS_SHOWN = 10;
const ROW_COUNT_TAG = /^(?:SELECT|COPY|FETCH) (\d+)$/;

/** Each result set the client received, as a small table; with several, each under its tag. */
function renderResultSets(io: IOStreams, cs: ColorScheme, sets: ResultSet[], truncated: boolean, maxRows: number, full: boolean, copy: CopyLayout | null, margin = '  '): void {
  const withData = sets.filter((s) => s.columns.length > 0 || s.rows.length > 0);
  for (const set of withData.slice(0, MAX_SETS_SHOWN)) {
    if (withData.length > 1) io.print(`${margin}${cs.dim(sanitize(set.tag ?? 'ended without a command tag'))}`);
    const total = Number(ROW_COUNT_TAG.exec(set.tag ?? '')?.[1] ?? set.rows.length);
    renderResult(io, cs, copy?.direction === 'to' ? copyOutSet(set, copy) : set, total, maxRows, truncated, full, margin);
  }
  const more = withData.length - MAX_SETS_SHOWN;
  if (more > 0) io.print(cs.dim(`${margin}… ${more} more result set${more === 1 ? '' : 's'}`));
}

function outcomeText(cs: ColorScheme, outcome: string): string {
  switch (outcome) {
    case 'ok':
      return cs.green('ok');
    case 'error':
      return cs.red('error');
    case 'refused':
      return cs.red('refused');
    default:
      return cs.yellow(outcome);
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${sanitize(l)}`)
    .join('\n');
}

function formatParam(p: unknown, full: boolean): string {
  if (p === null || p === undefined) return 'NULL';
  if (typeof p === 'string') return sanitize(`'${!full && p.length > 60 ? `${p.slice(0, 59)}…` : p}'`.replace(/\n/g, ' '));
  return sanitize(JSON.stringify(p));
}

const CELL_MAX = 32;

/** The first rows of a result set, as a small boxed table; wide values are cut, never wrapped. */
/**
 * A COPY … TO STDOUT set is recorded as one `copy` column holding each CopyData line: shown
 * split into the fields of its format, under the columns the statement names (or the CSV
 * header line, or column1…). Binary COPY stays one hex column.
 */
function copyOutSet(set: ResultSet, copy: CopyLayout): ResultSet {
  if (copy.format === 'binary' || set.columns.length !== 1 || set.columns[0] !== 'copy') return set;
  let rows = set.rows.map((r) => (typeof r[0] === 'string' ? copyFields(r[0], copy) : [r[0] ?? null]));
  let columns = copy.columns ?? [];
  if (copy.header && rows.length > 0) {
    if (!copy.columns) columns = rows[0]!.map((f) => f ?? '');
    rows = rows.slice(1);
  }
  const width = rows.reduce((n, r) => Math.max(n, r.length), columns.length);
  columns = Array.from({ length: width }, (_, i) => columns[i] ?? `column${i + 1}`);
  return { ...set, columns, rows };
}

function renderResult(io: IOStreams, cs: ColorScheme, { columns: named, rows }: ResultSet, total: number, maxRows: number, truncated: boolean, full: boolean, margin: string): void {
  // Rows of a portal executed without a Describe come without column names: number them.
  const columns = named.length > 0 ? named : Array.from({ length: rows.reduce((n, r) => Math.max(n, r.length), 0) }, (_, i) => `column${i + 1}`);
  const cut = (v: string) => {
    const s = sanitize(v);
    return !full && s.length > CELL_MAX ? `${s.slice(0, CELL_MAX - 1)}…` : s;
  };
  const shown = rows.slice(0, maxRows).map((r) => columns.map((_, i) => (r[i] === null || r[i] === undefined ? 'NULL' : cut(String(r[i])))));
  const head = columns.map(cut);
  const widths = head.map((h, i) => Math.max(h.length, ...shown.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[], nulls = false) =>
    `${margin}│ ${cells.map((c, i) => (nulls && c === 'NULL' ? cs.dim(c.padEnd(widths[i] ?? 0)) : c.padEnd(widths[i] ?? 0))).join(' │ ')} │`;
  const rule = (l: string, m: string, r: string) => `${margin}${l}${widths.map((w) => '─'.repeat(w + 2)).join(m)}${r}`;
  io.print(cs.dim(rule('┌', '┬', '┐')));
  io.print(cs.bold(line(head)));
  io.print(cs.dim(rule('├', '┼', '┤')));
  for (const r of shown) io.print(line(r, true));
  io.print(cs.dim(rule('└', '┴', '┘')));
  const more = Math.max(total - shown.length, 0);
  if (more > 0) io.print(cs.dim(`${margin}… ${more} more row${more === 1 ? '' : 's'}${truncated ? ' (recording truncated at the payload limit)' : ''}`));
}

export const commands: CommandGroup['commands'] = [sessionsCommand];
