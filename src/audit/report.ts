/**
 * report.html: the one page an examiner opens first (docs/audit-report.md). Self-contained: inline
 * CSS, an inline SVG timeline, no script, no request to anywhere (a Content-Security-Policy
 * forbids both, should anything slip through); every value that comes from an event is escaped.
 *
 * Streaming: the builder is fed the range's events (seq order) and its statement rows
 * (summary.ts) and keeps counts, not events: per user and per connection, masked values per
 * label, approvals by request, the timeline as counts per time bucket (the bucket grows when too
 * many are held), and the first N statements, refusals and failed logins for the lists, each
 * text cut short. The page's numbers carry data attributes (`data-metric`, `data-user`,
 * `data-connection`, `data-total`) so that a test, or an examiner's script, reads them back.
 */
import type { AuditEvent } from './event.js';
import { userOf, type StatementRow } from './summary.js';

export interface ReportInput {
  range: { since: string; until: string };
  filters: { user?: string; connection?: string };
  generated_at: string;
  /** Who exported. */
  generated_by: string;
  gateway_version: string;
  verification: {
    ok: boolean;
    events: number;
    first_seq: number | null;
    last_seq: number | null;
    checkpoints: number;
    key_ids: string[];
    failure: { seq: number; reason: string } | null;
    payloads_pruned?: number;
  };
}

export interface ReportLinks {
  /** The href of a statement's recorded result (a bundle's `payloads/<end_seq>.json`), or null. */
  result(row: StatementRow): string | null;
}

export interface ReportOptions {
  /** Statements listed on the page (the rest are in summary.csv); default 5 000. */
  statements?: number;
  /** Refused statements, access refusals, failed logins and approvals listed; default 1 000 each. */
  listed?: number;
  /** Characters of a statement shown; default 2 000. */
  textChars?: number;
}

interface Tally {
  sessions: number;
  statements: number;
  rows: number;
  bytes: number;
  refused: number;
}

interface ApprovalEntry {
  id: string;
  time: string;
  kind: string;
  requester: string;
  connection: string | null;
  rule: string | null;
  statement: string | null;
  reason: string | null;
  duration_ms: number | null;
  min_approvals: number;
  approvers: string[];
  denied_by: string | null;
  comment: string | null;
  outcome: string;
  window: string | null;
}

interface Listed<T> {
  items: T[];
  more: number;
}

/** A statement as the page keeps it: texts cut, parameters as cut JSON. */
interface KeptStatement {
  row: StatementRow;
  parameters: string | null;
}

/** Tracked approval requests; one beyond it is counted, not kept. */
const TRACKED_APPROVALS = 10_000;
/** Distinct masked labels kept apart; beyond it their counts go to one line. */
const MASK_LABELS = 1_000;
const OTHER_LABELS = '(other labels)';

export class ReportBuilder {
  private readonly limits: Required<ReportOptions>;
  private readonly totals: Tally & { users: Set<string>; connections: Set<string> } = { ...emptyTally(), users: new Set(), connections: new Set() };
  private readonly byUser = new Map<string, Tally>();
  private readonly byConnection = new Map<string, Tally>();
  private readonly masked = new Map<string, { values: number; statements: number }>();
  private readonly approvals = new Map<string, ApprovalEntry>();
  private approvalsUntracked = 0;
  private readonly refusedStatements: Listed<StatementRow> = { items: [], more: 0 };
  private readonly denials: Listed<{ time: string; user: string; connection: string | null; stage: string; reason: string; via: string; address: string | null }> = { items: [], more: 0 };
  private deniedCount = 0;
  private readonly failedLogins: Listed<{ time: string; address: string | null; application: string | null; reason: string; path: string | null; count: number }> = { items: [], more: 0 };
  private failedCount = 0;
  private logins = 0;
  private readonly statements: KeptStatement[] = [];
  private statementsMore = 0;
  private readonly types = new Map<string, number>();
  private readonly timeline = new Timeline();

  constructor(options: ReportOptions = {}) {
    this.limits = { statements: options.statements ?? 5_000, listed: options.listed ?? 1_000, textChars: options.textChars ?? 2_000 };
  }

  /** Sessions, logins, refusals (access.denied), failed logins (auth.failed), approvals. */
  addEvent(e: AuditEvent): void {
    if (this.types.has(e.type) || this.types.size < 100) this.types.set(e.type, (this.types.get(e.type) ?? 0) + 1);
    const d = e.data;
    switch (e.type) {
      case 'session.start': {
        const user = userOf(e.actor);
        this.totals.sessions++;
        this.totals.users.add(user);
        tally(this.byUser, user).sessions++;
        if (e.connection !== null) {
          this.totals.connections.add(e.connection);
          tally(this.byConnection, e.connection).sessions++;
        }
        return;
      }
      case 'auth.succeeded':
        this.logins++;
        return;
      case 'auth.failed': {
        const count = 1 + (num(d['suppressed']) ?? 0);
        this.failedCount += count;
        push(this.failedLogins, this.limits.listed, {
          time: e.time, address: e.source?.address ?? null, application: e.source?.application ?? null,
          reason: this.cut(text(d['reason'])), path: str(d['path']), count,
        });
        return;
      }
      case 'access.denied':
        this.deniedCount += 1 + (num(d['suppressed']) ?? 0);
        push(this.denials, this.limits.listed, {
          time: e.time, user: userOf(e.actor), connection: e.connection, stage: text(d['stage']), reason: this.cut(text(d['reason'])),
          via: text(d['via']), address: e.source?.address ?? null,
        });
        return;
      case 'approval.requested':
        this.requested(e);
        return;
      case 'approval.decided':
        this.decided(e);
        return;
      case 'approval.used': {
        const a = this.approval(e);
        if (a) a.outcome = 'used';
        return;
      }
      case 'grant.started': {
        const a = this.approval(e);
        if (a) {
          a.outcome = 'approved';
          a.window = `${text(d['from'])} – ${text(d['until'])}`;
        }
        return;
      }
      case 'grant.ended': {
        const a = this.approval(e);
        if (a) a.outcome = 'ended';
        return;
      }
      default:
    }
  }

  /** Per-user and per-connection counts, masked values, the timeline, the listed statements. */
  addStatement(row: StatementRow): void {
    const refused = row.outcome === 'refused';
    const connection = row.connection ?? '';
    for (const t of [this.totals, tally(this.byUser, row.user), tally(this.byConnection, connection)]) {
      t.statements++;
      t.rows += row.rows ?? 0;
      t.bytes += row.bytes ?? 0;
      if (refused) t.refused++;
    }
    this.totals.users.add(row.user);
    if (row.connection !== null) this.totals.connections.add(row.connection);
    for (const label of row.masked_columns) {
      const key = this.masked.has(label) || this.masked.size < MASK_LABELS ? label : OTHER_LABELS;
      const m = this.masked.get(key) ?? { values: 0, statements: 0 };
      m.values += row.masked_counts[label] ?? 0;
      m.statements++;
      this.masked.set(key, m);
    }
    this.timeline.add(Date.parse(row.time), refused);
    const kept: StatementRow = { ...row, statement: this.cut(row.statement), parameters: null };
    if (refused) push(this.refusedStatements, this.limits.listed, kept);
    if (this.statements.length >= this.limits.statements) this.statementsMore++;
    else this.statements.push({ row: kept, parameters: row.parameters === null || row.parameters.length === 0 ? null : this.cut(JSON.stringify(row.parameters)) });
  }

  /** The whole page. */
  render(input: ReportInput, links: ReportLinks): string {
    return [
      '<!DOCTYPE html>',
      '<html lang="en"><head><meta charset="utf-8">',
      `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      `<title>hoop audit report ${esc(input.range.since)} – ${esc(input.range.until)}</title>`,
      `<style>${CSS}</style></head><body>`,
      this.header(input),
      verificationBlock(input.verification),
      this.totalsBlock(),
      this.timelineBlock(input.range),
      tallyTable('Per user', 'user', this.byUser),
      tallyTable('Per connection', 'connection', this.byConnection),
      this.approvalsBlock(),
      this.maskedBlock(),
      this.refusalsBlock(),
      this.failedLoginsBlock(),
      this.statementsBlock(links),
      this.typesBlock(),
      '</body></html>',
      '',
    ].join('\n');
  }

  private requested(e: AuditEvent): void {
    const d = e.data;
    const id = str(d['request']);
    if (id === null) return;
    if (!this.approvals.has(id) && this.approvals.size >= TRACKED_APPROVALS) {
      this.approvalsUntracked++;
      return;
    }
    this.approvals.set(id, {
      id, time: e.time, kind: text(d['kind']) || 'statement', requester: userOf(e.actor), connection: e.connection, rule: str(d['rule']),
      statement: d['statement'] === null || d['statement'] === undefined ? null : this.cut(text(d['statement'])),
      reason: str(d['reason']), duration_ms: num(d['duration_ms']), min_approvals: num(d['min_approvals']) ?? 1,
      approvers: [], denied_by: null, comment: null, outcome: 'pending', window: null,
    });
  }

  private decided(e: AuditEvent): void {
    const d = e.data;
    // A decision the store refused (already decided, expired meanwhile) did not take effect.
    if (d['refused'] !== undefined) return;
    const a = this.approval(e);
    if (!a) return;
    const by = userOf(e.actor);
    switch (d['decision']) {
      case 'approve':
        if (!a.approvers.includes(by)) a.approvers.push(by);
        if (a.outcome === 'pending' && a.approvers.length >= (num(d['min_approvals']) ?? a.min_approvals)) a.outcome = 'approved';
        break;
      case 'deny':
        a.outcome = 'denied';
        a.denied_by = by;
        a.comment = str(d['comment']);
        break;
      case 'expired':
        a.outcome = 'expired';
        break;
      case 'cancelled':
        a.outcome = 'cancelled';
        break;
      default:
    }
  }

  /** The request an approval event is about; one requested before the range is started from this event. */
  private approval(e: AuditEvent): ApprovalEntry | null {
    const id = str(e.data['request']);
    if (id === null) return null;
    const known = this.approvals.get(id);
    if (known) return known;
    if (this.approvals.size >= TRACKED_APPROVALS) {
      this.approvalsUntracked++;
      return null;
    }
    const entry: ApprovalEntry = {
      id, time: e.time, kind: e.type.startsWith('grant.') ? 'grant' : '(requested before the range)', requester: text(e.data['requester']),
      connection: e.connection, rule: null, statement: null, reason: null, duration_ms: null, min_approvals: 1,
      approvers: [], denied_by: null, comment: null, outcome: 'pending', window: null,
    };
    this.approvals.set(id, entry);
    return entry;
  }

  private cut(s: string): string {
    if (s.length <= this.limits.textChars) return s;
    let head = s.slice(0, this.limits.textChars);
    if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
    return `${head}… (${s.length - head.length} more characters in summary.csv)`;
  }

  private header(input: ReportInput): string {
    const f = input.filters;
    const filters = [f.user !== undefined ? `user ${f.user}` : null, f.connection !== undefined ? `connection ${f.connection}` : null].filter((x): x is string => x !== null);
    return `<header><h1>hoop audit report</h1><dl class="meta">
<dt>Range</dt><dd id="range" data-since="${esc(input.range.since)}" data-until="${esc(input.range.until)}">${esc(input.range.since)} – ${esc(input.range.until)}</dd>
<dt>Filters</dt><dd id="filters">${filters.length === 0 ? 'none (every user and connection)' : esc(filters.join(', '))}</dd>
<dt>Generated</dt><dd>${esc(input.generated_at)} by ${esc(input.generated_by)}</dd>
<dt>Gateway</dt><dd>hoop ${esc(input.gateway_version)}</dd>
</dl></header>`;
  }

  private totalsBlock(): string {
    const t = this.totals;
    const cells: [string, string, number][] = [
      ['sessions', 'Sessions', t.sessions],
      ['statements', 'Statements', t.statements],
      ['rows', 'Rows returned', t.rows],
      ['bytes', 'Bytes returned', t.bytes],
      ['users', 'Users', t.users.size],
      ['connections', 'Connections', t.connections.size],
      ['refused', 'Statements refused', t.refused],
      ['denied', 'Access refusals', this.deniedCount],
      ['failed_logins', 'Failed logins', this.failedCount],
      ['approvals', 'Approval requests', this.approvals.size + this.approvalsUntracked],
    ];
    if (this.logins > 0) cells.push(['logins', 'Logins', this.logins]);
    return `<section id="totals"><h2>In this range</h2><div class="cards">${cells
      .map(([metric, label, n]) => `<div class="card"><div class="n" data-metric="${metric}" data-total="">${count(n)}</div><div class="l">${label}</div></div>`)
      .join('')}</div></section>`;
  }

  private timelineBlock(range: ReportInput['range']): string {
    const chart = this.timeline.svg(Date.parse(range.since), Date.parse(range.until));
    return `<section id="timeline"><h2>Activity</h2>${chart}</section>`;
  }

  private approvalsBlock(): string {
    const list = [...this.approvals.values()];
    const shown = list.slice(0, this.limits.listed);
    const more = list.length - shown.length + this.approvalsUntracked;
    const rows = shown.map((a) => `<tr data-approval="${esc(a.id)}">
<td class="mono">${esc(a.id)}</td><td class="t">${esc(a.time)}</td><td>${esc(a.kind)}</td><td data-field="requester">${esc(a.requester)}</td><td>${esc(a.connection ?? '')}</td>
<td>${esc(a.rule ?? '')}</td><td>${a.statement !== null ? `<pre>${esc(a.statement)}</pre>` : a.duration_ms !== null ? `access for ${esc(duration(a.duration_ms))}` : ''}${a.reason ? `<div class="why">reason: ${esc(a.reason)}</div>` : ''}</td>
<td data-field="approvers">${esc(a.approvers.join(', '))}</td><td data-field="outcome" class="o-${esc(a.outcome.replace(/[^a-z]/g, ''))}">${esc(a.outcome)}${a.denied_by ? ` by ${esc(a.denied_by)}${a.comment ? `: ${esc(a.comment)}` : ''}` : ''}${a.window ? `<div class="why">${esc(a.window)}</div>` : ''}</td></tr>`);
    return section('approvals', 'Approvals', list.length + this.approvalsUntracked === 0 ? '<p class="none">No approval requests in this range.</p>'
      : `${table(['Request', 'Requested', 'Kind', 'Requester', 'Connection', 'Rule', 'What', 'Approved by', 'Outcome'], rows)}${moreLine(more, 'approval requests', 'events.jsonl')}`);
  }

  private maskedBlock(): string {
    const list = [...this.masked.entries()].sort((a, b) => b[1].values - a[1].values || cmp(a[0], b[0]));
    const rows = list.map(([label, m]) => `<tr><td>${esc(label)}</td><td class="num" data-metric="masked_values" data-label="${esc(label)}">${count(m.values)}</td><td class="num" data-metric="masked_statements" data-label="${esc(label)}">${count(m.statements)}</td></tr>`);
    return section('masked', 'Masked values', list.length === 0 ? '<p class="none">No values were masked in this range.</p>' : table(['Column or detector', 'Values masked', 'Statements'], rows));
  }

  private refusalsBlock(): string {
    const st = this.refusedStatements;
    const stRows = st.items.map((r) => `<tr><td class="t">${esc(r.time)}</td><td>${esc(r.user)}</td><td>${esc(r.connection ?? '')}</td><td><pre>${esc(r.statement)}</pre></td><td>${esc(r.error ?? '')}</td><td class="num">${r.start_seq}</td></tr>`);
    const dn = this.denials;
    const dnRows = dn.items.map((r) => `<tr><td class="t">${esc(r.time)}</td><td>${esc(r.user)}</td><td>${esc(r.connection ?? '')}</td><td>${esc(r.via)}</td><td>${esc(r.stage)}</td><td>${esc(r.reason)}</td><td>${esc(r.address ?? '')}</td></tr>`);
    return section('refusals', 'Refusals', `<h3>Statements refused</h3>${st.items.length === 0 ? '<p class="none">None.</p>'
      : table(['Time', 'User', 'Connection', 'Statement', 'Why', 'Seq'], stRows) + moreLine(st.more, 'refused statements', 'summary.csv (outcome refused)')}
<h3>Access refused (access.denied)</h3>${dn.items.length === 0 ? '<p class="none">None.</p>'
      : table(['Time', 'User', 'Connection', 'Via', 'Check', 'Why', 'From'], dnRows) + moreLine(dn.more, 'refusals', 'events.jsonl (access.denied)')}`);
  }

  private failedLoginsBlock(): string {
    const f = this.failedLogins;
    const rows = f.items.map((r) => `<tr><td class="t">${esc(r.time)}</td><td>${esc(r.address ?? '')}</td><td>${esc(r.application ?? '')}</td><td>${esc(r.reason)}</td><td>${esc(r.path ?? '')}</td><td class="num">${count(r.count)}</td></tr>`);
    return section('failed-logins', 'Failed logins (auth.failed)', f.items.length === 0 ? '<p class="none">None.</p>'
      : table(['Time', 'From', 'Client', 'Why', 'Path', 'Attempts'], rows) + moreLine(f.more, 'failed logins', 'events.jsonl (auth.failed)'));
  }

  private statementsBlock(links: ReportLinks): string {
    const shown = this.statements;
    const rows = shown.map(({ row: r, parameters }) => {
      const href = safeHref(links.result(r));
      return `<tr data-seq="${r.start_seq}" class="o-${esc(r.outcome.replace(/[^a-z_]/g, ''))}">
<td class="t">${esc(r.time)}</td><td>${esc(r.user)}</td><td>${esc(r.connection ?? '')}</td><td class="mono" title="${esc(r.session_id ?? '')}">${esc((r.session_id ?? '').slice(0, 8))}</td>
<td><pre>${esc(r.statement)}</pre>${r.phase ? `<div class="why">${esc(r.phase)} only</div>` : ''}${parameters !== null ? `<div class="why">parameters: ${esc(parameters)}</div>` : ''}</td>
<td>${esc(r.outcome)}${r.error ? `<div class="why">${esc(r.error)}</div>` : ''}</td><td class="num">${r.rows === null ? '' : count(r.rows)}</td><td class="num">${r.bytes === null ? '' : count(r.bytes)}</td><td class="num">${r.duration_ms === null ? '' : esc(String(r.duration_ms))}</td>
<td>${esc(r.masked_columns.map((c) => `${c} (${r.masked_counts[c] ?? 0})`).join(', '))}</td><td>${r.approval_id ? `${esc(r.approval_id)}${r.approvers.length ? `<div class="why">by ${esc(r.approvers.join(', '))}</div>` : ''}` : ''}</td>
<td>${href !== null ? `<a href="${esc(href)}">result</a>` : r.end_seq === null ? '<span class="why">no query.end</span>' : ''}</td></tr>`;
    });
    const body = shown.length === 0 ? '<p class="none">No statements in this range.</p>'
      : table(['Time', 'User', 'Connection', 'Session', 'Statement', 'Outcome', 'Rows', 'Bytes', 'ms', 'Masked', 'Approval', 'Result'], rows)
        + `<p class="more" id="statements-more" data-more="${this.statementsMore}">${this.statementsMore === 0 ? 'Every statement of the range is listed above; summary.csv has the same rows in full.'
          : `${count(this.statementsMore)} more statements are in summary.csv (this page lists the first ${count(shown.length)}).`}</p>`;
    return section('statements', 'Statements', body);
  }

  private typesBlock(): string {
    const rows = [...this.types.entries()].sort((a, b) => cmp(a[0], b[0])).map(([t, n]) => `<tr><td class="mono">${esc(t)}</td><td class="num" data-metric="events" data-type="${esc(t)}">${count(n)}</td></tr>`);
    return section('types', 'Events by type', rows.length === 0 ? '<p class="none">None.</p>' : table(['Type', 'Events'], rows));
  }
}

function verificationBlock(v: ReportInput['verification']): string {
  const span = v.first_seq === null ? 'no events' : `seq ${v.first_seq}–${v.last_seq ?? v.first_seq}`;
  const headline = v.ok
    ? `<p class="verdict">VERIFIED</p><p>Every event's hash, the chain's continuity and every checkpoint signature check out.</p>${v.checkpoints === 0
      ? '<p class="warn" id="no-checkpoint">No signed checkpoint covers these events: the hashes show any edit of one event, but not a log rewritten whole or cut short.</p>' : ''}`
    : `<p class="verdict">VERIFICATION FAILED</p><p id="failure" data-seq="${v.failure?.seq ?? ''}">${v.failure ? `First failing event: seq ${v.failure.seq}: ${esc(v.failure.reason)}` : 'The chain did not verify.'}</p>`;
  return `<section id="verification" class="${v.ok ? 'ok' : 'failed'}" data-verification="${v.ok ? 'verified' : 'failed'}">${headline}
<dl class="meta"><dt>Events</dt><dd data-metric="verified_events">${count(v.events)} (${esc(span)})</dd>
<dt>Checkpoints</dt><dd data-metric="checkpoints">${count(v.checkpoints)}</dd>
<dt>Signing keys</dt><dd class="mono">${v.key_ids.length === 0 ? 'none' : v.key_ids.map(esc).join('<br>')}</dd>
${v.payloads_pruned ? `<dt>Payloads pruned</dt><dd data-metric="payloads_pruned">${count(v.payloads_pruned)} (by retention; their hashes still verify)</dd>` : ''}</dl>
<p class="why">Check it yourself: <code>hoop audit verify</code> on this bundle, or <code>sha256sum -c SHA256SUMS</code> and the steps in README.txt.</p></section>`;
}

function tallyTable(title: string, key: 'user' | 'connection', m: Map<string, Tally>): string {
  const list = [...m.entries()].sort((a, b) => b[1].statements - a[1].statements || cmp(a[0], b[0]));
  const cell = (metric: keyof Tally, name: string, n: number) => `<td class="num" data-metric="${metric}" data-${key}="${esc(name)}">${count(n)}</td>`;
  const rows = list.map(([name, t]) => `<tr><td>${esc(name === '' ? '(none)' : name)}</td>${cell('sessions', name, t.sessions)}${cell('statements', name, t.statements)}${cell('rows', name, t.rows)}${cell('bytes', name, t.bytes)}${cell('refused', name, t.refused)}</tr>`);
  return section(`per-${key}`, title, list.length === 0 ? '<p class="none">None.</p>' : table([key === 'user' ? 'User' : 'Connection', 'Sessions', 'Statements', 'Rows returned', 'Bytes returned', 'Refused'], rows));
}

/**
 * Statements per time bucket. Counts are kept at a fine bucket that grows (each step a multiple
 * of the last, so counts merge exactly) when too many buckets are held; the page shows at most
 * about 150 bars over the range.
 */
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const BUCKETS = [1, 5, 15, 60, 300, 900, 3_600, 21_600, 86_400, 7 * 86_400, 28 * 86_400, 364 * 86_400].map((s) => s * SECOND);
const HELD_BUCKETS = 4_096;
const SHOWN_BUCKETS = 150;

class Timeline {
  private step = 0;
  private readonly counts = new Map<number, { all: number; refused: number }>();

  add(t: number, refused: boolean): void {
    if (!Number.isFinite(t)) return;
    const key = Math.floor(t / BUCKETS[this.step]!) * BUCKETS[this.step]!;
    const c = this.counts.get(key) ?? { all: 0, refused: 0 };
    c.all++;
    if (refused) c.refused++;
    this.counts.set(key, c);
    while (this.counts.size > HELD_BUCKETS && this.step < BUCKETS.length - 1) this.coarsen();
  }

  private coarsen(): void {
    this.step++;
    const merged = [...this.counts.entries()];
    this.counts.clear();
    for (const [key, c] of merged) this.merge(this.counts, Math.floor(key / BUCKETS[this.step]!) * BUCKETS[this.step]!, c);
  }

  private merge(into: Map<number, { all: number; refused: number }>, key: number, c: { all: number; refused: number }): void {
    const to = into.get(key) ?? { all: 0, refused: 0 };
    to.all += c.all;
    to.refused += c.refused;
    into.set(key, to);
  }

  svg(since: number, until: number): string {
    if (this.counts.size === 0) return '<p class="none">No statements in this range.</p>';
    const keys = [...this.counts.keys()];
    let from = Number.isFinite(since) ? Math.min(since, Math.min(...keys)) : Math.min(...keys);
    let to = Number.isFinite(until) ? Math.max(until, Math.max(...keys) + 1) : Math.max(...keys) + 1;
    let step = this.step;
    while (step < BUCKETS.length - 1 && (to - from) / BUCKETS[step]! > SHOWN_BUCKETS) step++;
    const size = BUCKETS[step]!;
    from = Math.floor(from / size) * size;
    to = Math.ceil(to / size) * size;
    const shown = new Map<number, { all: number; refused: number }>();
    for (const [key, c] of this.counts) this.merge(shown, Math.floor(key / size) * size, c);
    const n = Math.max(1, Math.round((to - from) / size));
    const max = Math.max(...[...shown.values()].map((c) => c.all));
    const W = 960, H = 220, left = 48, right = 12, top = 12, bottom = 36;
    const bw = (W - left - right) / n;
    const y = (v: number) => top + (H - top - bottom) * (1 - v / max);
    const bars = [...shown.entries()].sort((a, b) => a[0] - b[0]).map(([key, c]) => {
      const x = left + ((key - from) / size) * bw;
      const w = Math.max(1, bw - (bw > 4 ? 1 : 0));
      const label = `${iso(key)} – ${iso(key + size)}: ${c.all} statements${c.refused ? `, ${c.refused} refused` : ''}`;
      const refusedBar = c.refused ? `<rect class="refused" x="${fx(x)}" y="${fx(y(c.refused))}" width="${fx(w)}" height="${fx(y(0) - y(c.refused))}"/>` : '';
      return `<g class="bar" data-bucket="${iso(key)}" data-count="${c.all}" data-refused="${c.refused}"><title>${label}</title><rect x="${fx(x)}" y="${fx(y(c.all))}" width="${fx(w)}" height="${fx(y(0) - y(c.all))}"/>${refusedBar}</g>`;
    });
    const axis = `<line x1="${left}" y1="${y(0)}" x2="${W - right}" y2="${y(0)}" class="axis"/><line x1="${left}" y1="${top}" x2="${left}" y2="${y(0)}" class="axis"/>`
      + `<text x="${left - 6}" y="${top + 10}" text-anchor="end">${max}</text><text x="${left - 6}" y="${y(0)}" text-anchor="end">0</text>`
      + `<text x="${left}" y="${H - 14}">${iso(from)}</text><text x="${W - right}" y="${H - 14}" text-anchor="end">${iso(to)}</text>`
      + `<text x="${(left + W - right) / 2}" y="${H - 2}" text-anchor="middle">statements per ${duration(size)} (red: refused)</text>`;
    return `<svg id="timeline-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="statements per ${duration(size)}" data-bucket-ms="${size}">${axis}${bars.join('')}</svg>`;
  }
}

function emptyTally(): Tally {
  return { sessions: 0, statements: 0, rows: 0, bytes: 0, refused: 0 };
}

function tally(m: Map<string, Tally>, key: string): Tally {
  let t = m.get(key);
  if (!t) m.set(key, (t = emptyTally()));
  return t;
}

function push<T>(l: Listed<T>, limit: number, item: T): void {
  if (l.items.length < limit) l.items.push(item);
  else l.more++;
}

function section(id: string, title: string, body: string): string {
  return `<section id="${id}"><h2>${esc(title)}</h2>${body}</section>`;
}

function table(head: string[], rows: string[]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

function moreLine(more: number, what: string, where: string): string {
  return more > 0 ? `<p class="more">${count(more)} more ${esc(what)} are not listed here: see ${esc(where)}.</p>` : '';
}

/**
 * Escapes text for HTML content and double-quoted attributes. Control characters and the
 * bidirectional overrides that could make a statement read differently from what ran
 * ("Trojan Source", CVE-2021-42574) are shown as their code points.
 */
export function esc(s: string): string {
  return s
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!)
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\uFEFF]/g, (c) => `⟨U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`)
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Only a relative path is linked (a bundle's own file): no scheme, no host, nothing that leaves the bundle. */
function safeHref(href: string | null): string | null {
  if (href === null) return null;
  return /^(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})(?:[A-Za-z0-9._~\/-]|%[0-9A-Fa-f]{2})*$/.test(href) && !href.split('/').includes('..') ? href : null;
}

/** An integer with thin spaces between thousands (what the page shows; strip them to read it back). */
function count(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, '\u202F');
}

function duration(ms: number): string {
  if (ms % (1440 * MINUTE) === 0) return ms === 1440 * MINUTE ? 'day' : `${ms / (1440 * MINUTE)} days`;
  if (ms % (60 * MINUTE) === 0) return ms === 60 * MINUTE ? 'hour' : `${ms / (60 * MINUTE)} hours`;
  if (ms % MINUTE === 0) return ms === MINUTE ? 'minute' : `${ms / MINUTE} minutes`;
  return ms === SECOND ? 'second' : `${Math.round(ms / SECOND)} seconds`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(':00.000Z', 'Z');
}

function fx(v: number): string {
  return v.toFixed(2).replace(/\.?0+$/, '');
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v);
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

const CSS = `
:root{color-scheme:light;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--ok:#1a7f37;--bad:#cf222e;--bar:#0969da}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:24px auto;max-width:1400px;padding:0 16px}
h1{font-size:24px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
#verification{border:3px solid;border-radius:8px;padding:12px 16px;margin:16px 0}#verification.ok{border-color:var(--ok);background:#dafbe1}#verification.failed{border-color:var(--bad);background:#ffebe9}
.verdict{font-size:28px;font-weight:700;margin:0}.ok .verdict{color:var(--ok)}.failed .verdict{color:var(--bad)}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:130px}.card .n{font-size:20px;font-weight:600}.card .l{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;margin:4px 0}th,td{border:1px solid var(--line);padding:3px 6px;vertical-align:top;text-align:left}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.t{white-space:nowrap;font-size:12px}
.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;max-height:12em;overflow:auto}
.why{color:var(--muted);font-size:12px}.warn{color:#9a6700;font-weight:600}.none{color:var(--muted)}.more{font-weight:600}
tr.o-refused td,tr.o-error td{background:#fff8f8}.o-denied,.o-expired{color:var(--bad)}.o-approved,.o-used{color:var(--ok)}
svg text{font-size:11px;fill:var(--muted)}svg .axis{stroke:var(--muted)}svg .bar rect{fill:var(--bar)}svg .bar rect.refused{fill:var(--bad)}
@media print{body{margin:0}pre{max-height:none}}
`;
