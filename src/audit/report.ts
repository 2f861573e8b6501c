/**
 * report.html: the one page an examiner opens first (docs/audit-report.md), gathered in one
 * streaming pass. The builder is fed the range's events (seq order) and its statement rows
 * (summary.ts) and keeps counts, not events: per user and per connection, masked values per
 * label, approvals by request, the timeline as counts per time bucket (timeline.ts), and the
 * first N statements, refusals and failed logins for the lists, each text cut short.
 * report-html.ts turns that into the page.
 */
import type { AuditEvent } from './event.js';
import { renderReport } from './report-html.js';
import { userOf, type StatementRow } from './summary.js';
import { Timeline } from './timeline.js';

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

export interface Tally {
  sessions: number;
  statements: number;
  rows: number;
  bytes: number;
  refused: number;
}

export interface ApprovalEntry {
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

export interface Listed<T> {
  items: T[];
  more: number;
}

/** A statement as the page keeps it: texts cut, parameters as cut JSON. */
export interface KeptStatement {
  row: StatementRow;
  parameters: string | null;
}

export interface Denial {
  time: string;
  user: string;
  connection: string | null;
  stage: string;
  reason: string;
  via: string;
  address: string | null;
}

export interface FailedLogin {
  time: string;
  address: string | null;
  application: string | null;
  reason: string;
  path: string | null;
  /** 1, or more when the event stands for suppressed attempts. */
  count: number;
}

/** What the page is made of: counts and capped lists. */
export interface ReportState {
  readonly listed: number;
  readonly totals: Tally & { users: Set<string>; connections: Set<string> };
  readonly byUser: Map<string, Tally>;
  readonly byConnection: Map<string, Tally>;
  readonly masked: Map<string, { values: number; statements: number }>;
  readonly approvals: Map<string, ApprovalEntry>;
  /** Approval requests beyond the tracked ones. */
  readonly approvalsUntracked: number;
  readonly refusedStatements: Listed<StatementRow>;
  readonly denials: Listed<Denial>;
  readonly deniedCount: number;
  readonly failedLogins: Listed<FailedLogin>;
  readonly failedCount: number;
  readonly logins: number;
  readonly statements: KeptStatement[];
  readonly statementsMore: number;
  readonly types: Map<string, number>;
  /** Who read the audit log (audit.read) and who exported it (export.created), by user. */
  readonly readers: Map<string, { reads: number; exports: number }>;
  readonly timeline: Timeline;
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
  private readonly denials: Listed<Denial> = { items: [], more: 0 };
  private deniedCount = 0;
  private readonly failedLogins: Listed<FailedLogin> = { items: [], more: 0 };
  private failedCount = 0;
  private logins = 0;
  private readonly statements: KeptStatement[] = [];
  private statementsMore = 0;
  private readonly types = new Map<string, number>();
  private readonly readers = new Map<string, { reads: number; exports: number }>();
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
      case 'audit.read':
      case 'export.created': {
        const who = userOf(e.actor);
        const r = this.readers.get(who) ?? { reads: 0, exports: 0 };
        if (e.type === 'audit.read') r.reads++;
        else r.exports++;
        this.readers.set(who, r);
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
          reason: this.cut(text(d['reason']), 'events.jsonl'), path: str(d['path']), count,
        });
        return;
      }
      case 'access.denied':
        this.deniedCount += 1 + (num(d['suppressed']) ?? 0);
        push(this.denials, this.limits.listed, {
          time: e.time, user: userOf(e.actor), connection: e.connection, stage: text(d['stage']), reason: this.cut(text(d['reason']), 'events.jsonl'),
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
    const listed = this.statements.length < this.limits.statements;
    if (!listed) this.statementsMore++;
    if (!listed && !(refused && this.refusedStatements.items.length < this.limits.listed)) {
      if (refused) this.refusedStatements.more++;
      return;
    }
    const kept: StatementRow = { ...row, statement: this.cut(row.statement), parameters: null };
    if (refused) push(this.refusedStatements, this.limits.listed, kept);
    if (listed) this.statements.push({ row: kept, parameters: this.parametersText(row.parameters) });
  }

  /** The whole page. */
  render(input: ReportInput, links: ReportLinks): string {
    return renderReport(this.state(), input, links);
  }

  private state(): ReportState {
    return {
      listed: this.limits.listed, totals: this.totals, byUser: this.byUser, byConnection: this.byConnection, masked: this.masked,
      approvals: this.approvals, approvalsUntracked: this.approvalsUntracked, refusedStatements: this.refusedStatements,
      denials: this.denials, deniedCount: this.deniedCount, failedLogins: this.failedLogins, failedCount: this.failedCount,
      logins: this.logins, statements: this.statements, statementsMore: this.statementsMore, types: this.types, readers: this.readers, timeline: this.timeline,
    };
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
      statement: d['statement'] === null || d['statement'] === undefined ? null : this.cut(text(d['statement']), 'events.jsonl'),
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
    // Past the cap: not counted here, since every later event of the request would count it again.
    if (this.approvals.size >= TRACKED_APPROVALS) return null;
    const entry: ApprovalEntry = {
      id, time: e.time, kind: e.type.startsWith('grant.') ? 'grant' : '(requested before the range)', requester: text(e.data['requester']),
      connection: e.connection, rule: null, statement: null, reason: null, duration_ms: null, min_approvals: 1,
      approvers: [], denied_by: null, comment: null, outcome: 'pending', window: null,
    };
    this.approvals.set(id, entry);
    return entry;
  }

  /** Parameters as JSON for the page, each long text cut first (a 10 MB parameter is not encoded whole). */
  private parametersText(parameters: unknown[] | null): string | null {
    if (parameters === null || parameters.length === 0) return null;
    const limit = this.limits.textChars;
    return this.cut(JSON.stringify(parameters.slice(0, limit).map((p) => (typeof p === 'string' && p.length > limit ? `${p.slice(0, limit)}…` : p))));
  }

    /** A text cut for the page, saying where the whole of it is. */
  private cut(s: string, where = 'summary.csv'): string {
    if (s.length <= this.limits.textChars) return s;
    let head = s.slice(0, this.limits.textChars);
    if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
    return `${head}… (${s.length - head.length} more characters in ${where})`;
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

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v);
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
