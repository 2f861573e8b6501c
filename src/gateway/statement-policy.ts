/**
 * Every statement of a session, decided in one place, in this order:
 *
 *   1. the shared-credential guard (guard-plan.ts): always on, for everyone;
 *   2. masking (masking.ts): refuse, or run with per-column transforms (or waived);
 *   3. the connection's access rules (src/policy/risk/): allow, deny, or require approval —
 *      a statement approved ahead of time (`hoop request --query`) runs at once, any other one
 *      is held on the live connection until its request is decided (approvals.ts);
 *   4. the row cap of the approval block on whatever runs (a SQL cursor's FETCHes count as one
 *      result, capped too by the estimate rule its DECLARE ran under).
 *
 * The current config is read per statement, so a reload applies to the next one. Classification
 * and the statement's fingerprint are computed once per distinct text and config.
 */
import type { Identity } from '../identity/identity.js';
import type { FinalPlan, HoldPlan, RefusePlan, RunPlan, StatementEnd, StatementPlan, StatementStart } from '../protocols/engine.js';
import { fingerprintSql } from '../policy/masking/parse.js';
import { classifyQuery, cursorsOf, type QueryClassification } from '../policy/risk/classify.js';
import { ESTIMATED_KINDS, decide, estimateCap, rulesFor, type RuleDecision } from '../policy/risk/rules.js';
import type { ApprovalConfig } from '../policy/risk/types.js';
import { errorMessage } from '../errors.js';
import type { ApprovalService } from './approvals.js';
import { protectedRolesOf, sessionRoleOf } from './db-roles.js';
import type { Estimator } from './estimator.js';
import { guardPlan } from './guard-plan.js';
import type { LiveConnection } from './live-config.js';
import type { MaskingService, SessionMasking } from './masking.js';
import { withViewSources } from './view-sources.js';

/** SQLSTATE insufficient_privilege: a statement refused by policy. */
const SQLSTATE_REFUSED = '42501';
/** Distinct texts whose classification a connection's rules keep. */
const CLASSIFICATION_CACHE_ENTRIES = 2_000;

export interface PolicyDeps {
  current(name: string): LiveConnection | undefined;
  masking: MaskingService;
  approvals: ApprovalService;
  estimator: Estimator;
}

export interface SessionInfo {
  identity: Identity;
  connection: string;
  sessionId: string;
  /** The session's `--reason`, carried into approval requests. */
  reason: string | null;
  /** Told when a statement of the session is held (after the client's NOTICE is decided on):
   *  the tunnel passes it on to `hoop connect` out of band. */
  onHold?: (hold: HoldEvent) => void;
}

/** A statement of the session waits for approval: what `hoop connect` prints. */
export interface HoldEvent { request: string; rule: string | null; notice: string }

/** Classifications per text, kept while one approval config object lives. */
const classified = new WeakMap<ApprovalConfig, Map<string, { classification: QueryClassification; fingerprint: string | null }>>();

export class SessionPolicy {
  private readonly masking: SessionMasking;

  constructor(private readonly deps: PolicyDeps, private readonly session: SessionInfo) {
    this.masking = deps.masking.session(session.connection, session.identity);
  }

  /** The decision for a statement; a run plan kept for a prepared statement holds only while the
   *  connection's config is the one it was made under (a reload applies to the next Execute). */
  plan(start: StatementStart): StatementPlan | Promise<StatementPlan> {
    const connection = this.deps.current(this.session.connection);
    const planned = this.decideUnder(start, connection);
    const valid = () => this.deps.current(this.session.connection) === connection;
    return planned instanceof Promise ? planned.then((p) => keptWhile(p, valid)) : keptWhile(planned, valid);
  }

  /** The roles the guard protects, worked out once per connection config (not per statement). */
  private roles: { connection: LiveConnection; roles: string[] } | null = null;
  private protectedRoles(connection: LiveConnection): string[] {
    if (this.roles?.connection !== connection) this.roles = { connection, roles: protectedRolesOf(connection, this.session.identity) };
    return this.roles.roles;
  }

  private decideUnder(start: StatementStart, connection: LiveConnection | undefined): StatementPlan | Promise<StatementPlan> {
    if (connection) {
      const guarded = guardPlan(start, this.protectedRoles(connection));
      if (guarded) return guarded;
    }
    const masked = this.masking.plan(start);
    const approval = connection?.approval ?? null;
    if (!connection || !approval) return masked instanceof Promise ? masked.then(withoutApprovals) : withoutApprovals(masked);
    return masked instanceof Promise ? masked.then((m) => this.withRules(start, m, connection, approval)) : this.withRules(start, masked, connection, approval);
  }

  /** What the connection's access rules make of a statement masking would run. */
  private async withRules(start: StatementStart, masked: StatementPlan, connection: LiveConnection, approval: ApprovalConfig): Promise<StatementPlan> {
    if (masked.action !== 'run') return masked;
    if (this.cursorsFull(start)) {
      return refuse(`hoop: statement refused: this session has fetched from ${MAX_CURSORS} cursors, and hoop counts each one's rows against the row cap; reconnect to read from more`, { refused: 'too many cursors' });
    }
    const fetching = this.fetchPlan(start, masked, approval);
    const run = this.declared(start, fetching, undefined);
    if (start.protocol === 'fastpath') return run;
    const predicate = (masked as { approvalRequired?: string }).approvalRequired;
    if (!predicate && rulesFor(approval.rules, this.session.identity.groups).length === 0) return this.wholeIfApproved(start, masked, run, null);
    let decision: RuleDecision;
    let fingerprint: string | null;
    let cap: PlannedCap | null;
    try {
      ({ decision, fingerprint, cap } = await this.decide(start, connection, approval));
    } catch (err) {
      return refuse(`hoop: statement refused: the access rules of connection ${connection.name} could not be applied (${errorMessage(err)})`, { refused: 'rules unavailable' });
    }
    // A predicate on a protected column (masking.predicates: require_approval) needs approval too.
    if (predicate && decision.action === 'allow') decision = { action: 'require_approval', rule: 'masking.predicates', reason: predicate };
    const summary = { rule: decision.rule, reason: decision.reason };
    if (decision.action === 'allow') {
      const more = decision.rule ? { access: summary } : null;
      const capReason = cap ? `more than ${cap.rows} rows, which rule ${cap.rule} holds for approval (the planner estimated ${cap.estimate ?? 'no'} rows)` : '';
      // Allowed on its estimate: capped at the rows the rule it escaped allows (estimateCap); a
      // cursor's DECLARE returns no rows itself, so the cap goes to its FETCHes.
      const guarded = cap?.cursor
        ? this.declared(start, fetching, { rows: cap.rows, reason: capReason, declare: start.statement, parameters: start.parameters })
        : cap && cap.rows < (approval.rowCap ?? Infinity)
          ? this.capped(start, masked, cap.rows, approval, capReason)
          : run;
      return this.wholeIfApproved(start, more ? withSummary(masked, more) : masked, more ? withSummary(guarded, more) : guarded, fingerprint, cap?.cursor === true || guarded.rowCap !== undefined);
    }
    if (decision.action === 'deny') return refuse(`hoop: statement refused: ${decision.reason}`, summary);
    // A Parse recorded on its own runs nothing: the hold (or an approval's use) waits for its
    // Execute, which is planned afresh since this plan is not kept for the statement.
    if (start.phase === 'parse') return { ...run, once: true };
    if (fingerprint === null) return refuse(`hoop: statement refused: ${decision.reason}, and hoop cannot fingerprint it to ask for approval`, summary);
    const pre = await this.deps.approvals.consumePreApproved({ subject: this.session.identity.subject, connection: connection.name, fingerprint, parameters: start.parameters });
    // What was approved runs whole: the row cap is for what was not.
    const approved = masked as RunPlan;
    if (pre) return this.declared(start, { ...withSummary(approved, { approval: { request: pre.id, rule: decision.rule, approved_ahead: true, approvers: approversOf(pre) } }), once: true }, 'whole');
    return this.hold(start, approved, decision, fingerprint, approval);
  }

  /** The plan under the row cap; a FETCH from a cursor with a limit of its own gets that instead (or nothing, approved whole). */
  private fetchPlan(start: StatementStart, masked: RunPlan, approval: ApprovalConfig): RunPlan {
    const limit = this.fetchLimit(start);
    if (limit === 'whole') return masked;
    if (limit !== null && limit.rows < (approval.rowCap ?? Infinity)) return this.capped(start, masked, limit.rows, approval, limit.reason, limit);
    return approval.rowCap !== null ? this.capped(start, masked, approval.rowCap, approval) : masked;
  }

  /**
   * The plan under the row cap: a result cut at it makes an approval request for this statement
   * (text, fingerprint, parameters), named in the client's error, so the user can ask for all of
   * it: once approved, the same statement run again runs whole (wholeIfApproved).
   */
  private capped(start: StatementStart, masked: RunPlan, rowCap: number, approval: ApprovalConfig, reason = `row cap of ${rowCap} exceeded`, requestFor: CapLimit | null = null): RunPlan {
    return {
      ...masked,
      ...this.cursorRows(start),
      rowCap,
      rowCapHint: () => {
        // A capped cursor's request is for its query (the DECLARE), which is what runs whole once approved.
        const text = requestFor?.declare ?? start.statement;
        const fingerprint = !requestFor && (start.unknown || start.statementTruncated || start.protocol === 'fastpath') ? null : fingerprintOf(text);
        if (fingerprint === null) return `ask for approval to read more (hoop request ${this.session.connection} --query …), or narrow the query`;
        const id = this.deps.approvals.requestInBackground({
          identity: this.session.identity,
          connection: this.session.connection,
          reason,
          config: approval,
          statement: { text, fingerprint, parameters: requestFor?.parameters ?? start.parameters },
        });
        return requestFor
          ? `approval request ${id} was created for the cursor's query; run it again (declare the cursor again) once it is approved`
          : `approval request ${id} was created for the full result; run the statement again once it is approved`;
      },
    };
  }

  /**
   * A statement the rules let run, under the row cap (`capped`, or `limited`: a cursor whose
   * FETCHes are): approved ahead of time (a row cap's request, or `hoop request --query`) it runs
   * whole, once; else capped. The store is asked only when this replica knows of such a request
   * for the user (the hot path stays in memory).
   */
  private async wholeIfApproved(start: StatementStart, whole: RunPlan, capped: RunPlan, fingerprint: string | null, limited = capped.rowCap !== undefined): Promise<RunPlan> {
    if (!limited || start.unknown || start.statementTruncated) return capped;
    // A Parse recorded on its own runs nothing: its Execute is planned afresh and may use the approval.
    if (start.phase === 'parse') return { ...capped, once: true };
    const { subject } = this.session.identity;
    const connection = this.session.connection;
    const approvals = this.deps.approvals;
    if (!approvals.mayBePreApproved({ subject, connection })) return capped;
    const known = fingerprint ?? fingerprintOf(start.statement);
    if (known === null || !approvals.mayBePreApproved({ subject, connection, fingerprint: known })) return capped;
    // The store unreachable: the statement still runs, under the cap (the safe side).
    const pre = await approvals.consumePreApproved({ subject, connection, fingerprint: known, parameters: start.parameters }).catch(() => null);
    return pre ? this.declared(start, { ...withSummary(whole, { approval: { request: pre.id, rule: null, approved_ahead: true, approvers: approversOf(pre) } }), once: true }, 'whole') : capped;
  }

  private async decide(start: StatementStart, connection: LiveConnection, approval: ApprovalConfig): Promise<{ decision: RuleDecision; fingerprint: string | null; cap: PlannedCap | null }> {
    const text = start.statement;
    let cache = classified.get(approval);
    if (!cache) classified.set(approval, (cache = new Map()));
    let known = cache.get(text);
    if (!known) {
      const protectedColumns = await this.masking.protectedColumns(text);
      let fingerprint: string | null = null;
      try {
        fingerprint = fingerprintSql(text);
      } catch {
        // Unparseable: the rules decide it strictly, and it cannot be approved.
      }
      known = { classification: classifyQuery(text, (i) => protectedColumns[i] ?? []), fingerprint };
      if (cache.size >= CLASSIFICATION_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
      cache.set(text, known);
    }
    const { classification, fingerprint } = known;
    let statements = classification.parseError === null ? classification.statements : null;
    const rules = rulesFor(approval.rules, this.session.identity.groups);
    // A rule on a table holds a read of a view over it too (view-sources.ts).
    if (statements && rules.some((r) => r.when.tables)) statements = withViewSources(statements, await this.deps.masking.schemaCache(connection).snapshot());
    // What collects rows into values has no row count to estimate (rules.ts counts it as large).
    const estimate = statements && statements.length === 1 && ESTIMATED_KINDS.has(statements[0]!.kind) && !statements[0]!.collects && rules.some((r) => r.when.estimated_rows)
      ? await this.deps.estimator.estimate(connection, text, sessionRoleOf(connection, this.session.identity), start.parameters)
      : null;
    let decision = decide(statements, approval.rules, this.session.identity.groups, () => estimate);
    const cap = decision.action === 'allow' && estimate !== null ? estimateCap(statements, approval.rules, this.session.identity.groups) : null;
    if (cap?.deferred && isOneDeclare(text, statements)) return { decision, fingerprint, cap: { ...cap, estimate, cursor: true } };
    if (cap?.deferred) {
      // A prepared statement's rows come back from EXECUTE, out of a cap's reach: the rule decides.
      decision = { action: cap.action, rule: cap.rule, reason: `rule ${cap.rule}: a cursor or prepared statement, whose rows cannot be capped where they come back, estimated at ${estimate} rows (an estimate is a guess: past ${cap.rows} rows the rule applies)` };
      return { decision, fingerprint, cap: null };
    }
    return { decision, fingerprint, cap: cap ? { ...cap, estimate } : null };
  }

  /** Holds the statement until its request is decided; the client is told how to approve it. */
  private async hold(start: StatementStart, run: RunPlan, decision: RuleDecision, fingerprint: string, approval: ApprovalConfig): Promise<HoldPlan | RefusePlan> {
    const { request, stored, outcome, cancel } = this.deps.approvals.hold({
      identity: this.session.identity,
      connection: this.session.connection,
      statement: start.statement,
      fingerprint,
      parameters: start.parameters,
      rule: decision.rule ?? 'unparseable',
      estimate: null,
      reason: this.session.reason,
      sessionId: this.session.sessionId,
      config: approval,
    });
    try {
      // The requester is told the request's id only once a reviewer can find it.
      await stored;
    } catch (err) {
      return refuse(`hoop: statement refused: ${decision.reason}, and hoop could not record the approval request (${errorMessage(err)})`, { rule: decision.rule });
    }
    const waited = Date.now();
    const settled = outcome.then(async (o): Promise<FinalPlan> => {
      const decided = await this.deps.approvals.get(request.id).catch(() => null);
      const by = decided?.approvals.find((a) => a.decision === 'deny');
      const about = { request: request.id, rule: decision.rule, outcome: o, waited_ms: Date.now() - waited, approvers: decided ? approversOf(decided) : [], ...(by ? { denied_by: by.approver } : {}) };
      if (o === 'approved') return this.declared(start, { ...withSummary(run, { approval: about }), once: true }, 'whole');
      const why = o === 'denied' ? `denied${by ? ` by ${by.approver}${by.comment ? `: ${by.comment}` : ''}` : ''}` : o === 'expired' ? `not decided within ${Math.round(approval.timeoutMs / 60_000)}m (expired)` : 'cancelled';
      return refuse(`hoop: statement not run: approval request ${request.id} (${decision.reason}) was ${why}`, about);
    });
    const notice = `hoop: approval required (rule ${decision.rule ?? 'unparseable'}) — request ${request.id}; waiting up to ${formatMinutes(approval.timeoutMs)}; approve with: hoop review approve ${request.id}`;
    try {
      this.session.onHold?.({ request: request.id, rule: decision.rule, notice });
    } catch {
      // Telling the terminal is a courtesy: the client's NOTICE says the same.
    }
    return {
      action: 'hold',
      notice,
      decision: settled,
      cancelled: cancel,
      summary: { approval: { request: request.id, rule: decision.rule } },
    };
  }

  /** Rows each SQL cursor of the session has returned so far, by name: one result over its FETCHes. */
  private readonly fetched = new Map<string, number>();

  /** A FETCH from a cursor not yet counted, when MAX_CURSORS are: refused, never forgotten
   *  (forgetting a count would let that cursor's next FETCH start again from zero). */
  private cursorsFull(start: StatementStart): boolean {
    if (this.fetched.size < MAX_CURSORS && this.cursorLimits.size < MAX_CURSORS) return false;
    const use = start.unknown ? null : cursorsOf(start.statement);
    if (use === null) return false;
    return (this.fetched.size >= MAX_CURSORS && use.fetches.some((c) => !this.fetched.has(c)))
      || (this.cursorLimits.size >= MAX_CURSORS && use.declares.some((c) => !this.cursorLimits.has(c)));
  }

  /**
   * What a cursor's DECLARE leaves for its FETCHes, by name: the cap of the rule it ran under on
   * its estimate, or `whole` (its query was approved). A cursor with neither gets the row cap alone.
   */
  private readonly cursorLimits = new Map<string, CursorLimit>();

  /** The plan, with the DECLAREs it runs setting their cursors' limit once they succeed (a new
   *  DECLARE of a name replaces what the last one left). */
  private declared<P extends StatementPlan>(start: StatementStart, plan: P, limit: CursorLimit | undefined): P {
    const use = plan.action === 'run' && !start.unknown ? cursorsOf(start.statement) : null;
    if (!use || use.declares.length === 0) return plan;
    const before = (plan as RunPlan).ended;
    return {
      ...plan,
      ended: (end: { rows: number; failed: boolean }) => {
        before?.(end);
        if (end.failed) return;
        // (Its count of fetched rows starts again in cursorRows, where the plan counts them.)
        for (const c of use.declares) {
          if (limit === undefined) this.cursorLimits.delete(c);
          else this.cursorLimits.set(c, limit);
        }
      },
    };
  }

  /** For a FETCH: `whole` when every cursor it reads was approved, the smallest cap among the
   *  capped ones, or null (the row cap alone). */
  private fetchLimit(start: StatementStart): CursorLimit | null {
    const use = start.unknown ? null : cursorsOf(start.statement);
    if (!use || use.fetches.length === 0) return null;
    const limits = use.fetches.map((c) => this.cursorLimits.get(c));
    if (limits.every((l) => l === 'whole')) return 'whole';
    let smallest: CapLimit | null = null;
    for (const l of limits) if (l !== undefined && l !== 'whole' && (smallest === null || l.rows < smallest.rows)) smallest = l;
    return smallest;
  }

  /**
   * A cursor's rows come back over many FETCHes, each a statement of its own: the row cap counts
   * them as the one result they are (`FETCH 40 FROM c` again and again would read any table past
   * a cap of 50). A FETCH starts from the rows its cursor returned before; a DECLARE that
   * succeeds starts a new count (it fails while a cursor of that name is open).
   */
  private cursorRows(start: StatementStart): Pick<RunPlan, 'rowsBefore' | 'ended'> {
    const use = start.unknown ? null : cursorsOf(start.statement);
    if (!use) return {};
    const { declares, fetches } = use;
    return {
      rowsBefore: () => fetches.reduce((n, c) => n + (declares.includes(c) ? 0 : this.fetched.get(c) ?? 0), 0),
      ended: ({ rows, failed }) => {
        if (!failed) for (const c of declares) this.fetched.delete(c);
        // Several cursors in one text: each is counted with all of the text's rows (never fewer).
        // A FETCH that returned nothing (no such cursor) counts nothing.
        if (rows > 0) for (const c of fetches) this.fetched.set(c, rows);
      },
    };
  }

  queryEnded(end: StatementEnd): void {
    this.masking.queryEnded(end);
  }

  get scrubText(): SessionMasking['scrubText'] {
    return this.masking.scrubText;
  }
}

function keptWhile(plan: StatementPlan, valid: () => boolean): StatementPlan {
  return plan.action === 'run' ? { ...plan, stillValid: valid } : plan;
}

/** The cap of the estimate rule a statement was allowed under (estimateCap); `cursor`: a DECLARE, whose FETCHes get it. */
interface PlannedCap { rows: number; rule: string; estimate: number | null; cursor?: true }

/** A cursor declared under an estimate rule: its FETCHes together stop past `rows`, asking for approval of `declare`. */
interface CapLimit { rows: number; reason: string; declare: string; parameters: StatementStart['parameters'] }
type CursorLimit = CapLimit | 'whole';

/** A query string that is one DECLARE … CURSOR FOR q (psql's FETCH_COUNT sends each query so). */
function isOneDeclare(text: string, statements: { kind: string }[] | null): boolean {
  return statements !== null && statements.length === 1 && cursorsOf(text)?.declares.length === 1;
}

/** How many SQL cursors' row counts one session keeps (statement-policy's `fetched`). */
const MAX_CURSORS = 1_000;

/** Without an approval block nobody can approve: what needs approval is refused, saying so. */
function withoutApprovals(plan: StatementPlan): StatementPlan {
  const why = plan.action === 'run' ? (plan as { approvalRequired?: string }).approvalRequired : undefined;
  return why ? refuse(`hoop: statement refused: ${why}; masking.predicates requires approval, and the connection has no approval block (no approvers)`, { rule: 'masking.predicates' }) : plan;
}

function fingerprintOf(text: string): string | null {
  try {
    return fingerprintSql(text);
  } catch {
    return null; // unparseable: it cannot be approved
  }
}

function approversOf(r: { approvals: { approver: string; decision: string }[] }): string[] {
  return r.approvals.filter((a) => a.decision === 'approve').map((a) => a.approver);
}

function withSummary(plan: RunPlan, more: Record<string, unknown>): RunPlan {
  return { ...plan, summary: { ...(plan.summary ?? {}), ...more } };
}

function refuse(message: string, access: Record<string, unknown>): RefusePlan {
  return { action: 'refuse', code: SQLSTATE_REFUSED, message, summary: { access } };
}

function formatMinutes(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : `${Math.round(ms / 1000)}s`;
}

