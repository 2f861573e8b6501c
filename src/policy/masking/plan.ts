/**
 * From a statement's analysis to the masking decision the engine applies: refuse it, or run it
 * with a transform per result column.
 *
 * A result column's taint is the analysis's (what the parse tree shows flowing into it) joined
 * with what the server itself says when it describes the result: a RowDescription field that
 * names a table column (table OID and attribute number) carries exactly that column's value, so
 * its protection is known exactly (through views too: relationTaints). The analysis decides for
 * every column the server cannot name (expressions); where the two disagree the protected one
 * wins, and a column neither can account for is masked as unknown.
 *
 * Masked columns get the rule's method in the column's own wire type (methods.ts); every other
 * column that may hold text goes through the content detectors (detectors.ts).
 */
import { KEEP, SQL_NULL, type ValueSink } from '../../protocols/value-sink.js';
import { columnMasker } from './methods.js';
import type { Scrubber, ValueScan } from './detectors.js';
import { relationTaints } from './lineage.js';
import type { AnalysisEnv, MaskRule, MaskingConfig, OutputColumn, PredicateUse, QueryAnalysis, StatementAnalysis, Taint } from './types.js';

/** A result column as the server describes it (tableOid/column/typeOid 0 when it does not). */
export interface DescribedColumn { name: string; tableOid: number; column: number; typeOid: number; format: number }
/** A ColumnTransform (engine.ts): a value as a range of its row, the replacement into a sink. */
export type ValueTransform = (row: Buffer, start: number, end: number, format: number, sink: ValueSink) => number;
export interface ColumnTally { statement: number; tally(label: string, n?: number): void; counter?(label: string): { n: number } }

/** SQLSTATE insufficient_privilege: what a refusal by policy is. */
export const SQLSTATE_REFUSED = '42501';
/** SQLSTATE syntax_error: the statement did not parse. */
const SQLSTATE_SYNTAX = '42601';

export interface MaskingRefusal { action: 'refuse'; code: string; message: string; hint?: string; summary: Record<string, unknown> }
export interface MaskingRun {
  action: 'run';
  columns: (columns: DescribedColumn[], context: ColumnTally) => (ValueTransform | null)[];
  copyOptions: (StatementAnalysis['copy'])[];
  redactMessageValues: boolean;
  summary: Record<string, unknown>;
  /** masking.predicates is require_approval and the statement uses a protected column to choose rows: why it needs approval. */
  approvalRequired?: string;
}
export type MaskingDecision = MaskingRefusal | MaskingRun;

export interface PlanInput {
  analysis: QueryAnalysis;
  config: MaskingConfig;
  env: AnalysisEnv;
  key: Buffer;
  scrubber: Scrubber | null;
  /** The connection's name, for messages. */
  connection: string;
}

const CLEAR: Taint = { sources: [], direct: false, unknown: null };

export function planMasking(input: PlanInput): MaskingDecision {
  const { analysis, config, connection } = input;
  if (analysis.parseError !== null) {
    return refuse(SQLSTATE_SYNTAX, `hoop: statement refused: connection ${connection} masks protected data and hoop cannot parse this statement (${analysis.parseError})`, { refused: 'parse error' });
  }
  const refusals = analysis.statements.flatMap((s) => s.refusals);
  if (refusals.length > 0) {
    return refuse(SQLSTATE_REFUSED, `hoop: statement refused: connection ${connection} masks protected data, and ${refusals[0]}`, { refused: refusals }, 'ask for a connection without masking, or for an exemption, if this access is needed');
  }
  const predicates = analysis.statements.flatMap((s) => s.predicates);
  if (predicates.length > 0 && config.predicates !== 'allow') {
    const first = predicates[0]!;
    const where = `it uses protected column ${first.column} in ${CLAUSE_NAMES[first.clause]}, which reveals its values one guess at a time`;
    if (config.predicates === 'require_approval') {
      // Runs only once approved: the access rules' hold (the gateway) takes it from here.
      const decided = run(input);
      return { ...decided, approvalRequired: where, summary: { masking: { ...(decided.summary['masking'] as object), predicates: uniquePredicates(predicates), predicates_action: 'require_approval' } } };
    }
    return refuse(SQLSTATE_REFUSED, `hoop: statement refused: ${where} (masking.predicates is deny on connection ${connection})`, { refused: 'predicate', predicates: uniquePredicates(predicates), predicates_action: config.predicates });
  }
  return run(input);
}

function refuse(code: string, message: string, masking: Record<string, unknown>, hint?: string): MaskingRefusal {
  return { action: 'refuse', code, message, ...(hint ? { hint } : {}), summary: { masking } };
}

function run(input: PlanInput): MaskingRun {
  const { analysis, key, scrubber, env } = input;
  const statements = analysis.statements;
  return {
    action: 'run',
    copyOptions: statements.map((s) => s.copy),
    redactMessageValues: statements.some((s) => s.touchesProtected),
    summary: { masking: summaryOf(input) },
    columns: (described, context) => {
      const outputs = statements[context.statement]?.result ?? null;
      const aligned = outputs !== null && outputs.length === described.length;
      const labels = labelsOf(described);
      return described.map((col, i) => {
        const out = aligned ? outputs[i]! : null;
        const taint = joinTaints(out ? out.taint : unknownTaint(outputs), originTaint(col, env));
        // COPY data is described by nothing but the statement: its types come from the analysis.
        const typed = col.typeOid === 0 && out?.typeOid ? { ...col, typeOid: out.typeOid } : col;
        return transformFor(taint, typed, labels[i]!, key, scrubber, context);
      });
    },
  };
}

function unknownTaint(outputs: OutputColumn[] | null): Taint {
  return { sources: [], direct: false, unknown: outputs === null ? 'the statement returns columns hoop cannot name' : 'the result has other columns than the statement analysis found' };
}

/** What the server's own description of a column proves: null when it names no table column. */
function originTaint(col: DescribedColumn, env: AnalysisEnv): Taint | null {
  if (col.tableOid === 0 || col.column <= 0) return null;
  const rel = env.schema.relationByOid(col.tableOid);
  if (!rel) return { sources: [], direct: false, unknown: `relation ${col.tableOid} is not in the catalog hoop read` };
  const at = rel.columns.findIndex((c) => c.attnum === col.column);
  if (at < 0) return { sources: [], direct: false, unknown: `column ${col.column} of ${rel.schema}.${rel.name} is not in the catalog hoop read` };
  return relationTaints(rel, env)[at] ?? { sources: [], direct: false, unknown: `column ${col.column} of ${rel.schema}.${rel.name} has no lineage` };
}

/** The analysis's taint and the server's: the protected one wins; a proven origin settles unknowns. */
export function joinTaints(analysed: Taint, origin: Taint | null): Taint {
  if (origin === null) return analysed;
  if (origin.sources.length > 0 || origin.unknown !== null) return origin.sources.length > 0 || analysed.sources.length === 0 ? origin : analysed;
  // The server proves the column is a clear table column's value; the analysis may over-approximate.
  return analysed.sources.length > 0 ? analysed : CLEAR;
}

function transformFor(taint: Taint, col: DescribedColumn, label: string, key: Buffer, scrubber: Scrubber | null, context: ColumnTally): ValueTransform | null {
  // A clear column: the detectors, unless its type is one they never scan (numbers, times, ...).
  if (taint.sources.length === 0 && taint.unknown === null) {
    const scan = scrubber?.forType(col.typeOid) ?? null;
    return scan === null ? null : detectorTransform(scan, context);
  }
  const rule = taint.sources.length === 0 ? null : taint.direct ? taint.sources[0]!.rule : strictest(taint.sources.map((s) => s.rule));
  const masker = columnMasker(rule, col.typeOid, !taint.direct, key);
  const counted = `${label} (${masker.method})`;
  const write = masker.write;
  const counter = context.counter?.(counted);
  if (counter) {
    return (row, start, end, format, sink) => {
      counter.n++;
      return write(row, start, end, format, sink);
    };
  }
  return (row, start, end, format, sink) => {
    context.tally(counted);
    return write(row, start, end, format, sink);
  };
}

/** The detectors over a clear column, with what its type decides (scanned at all, masked in place or nulled) decided once. */
function detectorTransform(scan: ValueScan, context: ColumnTally): ValueTransform {
  return (row, start, end, _format, sink) => {
    const found = scan(row, start, end);
    if (found === null) return KEEP;
    for (const hit of found.hits) context.tally(`detector:${hit}`);
    return found.value === null ? SQL_NULL : sink.write(found.value, 0, found.value.length);
  };
}

/** A derived value of several protected columns: null if any rule nulls, else a full redaction. */
function strictest(rules: MaskRule[]): MaskRule {
  const nulled = rules.find((r) => r.method === 'null');
  return nulled ?? { ...rules[0]!, method: 'redact' };
}

/** Column names for the record, made unique by position where a result repeats one. */
function labelsOf(columns: DescribedColumn[]): string[] {
  const seen = new Map<string, number>();
  for (const c of columns) seen.set(c.name, (seen.get(c.name) ?? 0) + 1);
  return columns.map((c, i) => ((seen.get(c.name) ?? 0) > 1 ? `${c.name}#${i + 1}` : c.name));
}

/** What query.start keeps of the plan: the protected columns the analysis found, and how. */
function summaryOf(input: PlanInput): Record<string, unknown> {
  const columns: Record<string, unknown>[] = [];
  input.analysis.statements.forEach((s, statement) => {
    if (s.result === null) {
      columns.push({ statement, column: '*', masked: 'unknown', reason: 'the statement returns columns hoop cannot name' });
      return;
    }
    s.result.forEach((out, index) => {
      const t = out.taint;
      if (t.unknown !== null) columns.push({ statement, index, column: out.name, masked: 'unknown', reason: t.unknown });
      else if (t.sources.length > 0) {
        const rule = t.direct ? t.sources[0]!.rule : strictest(t.sources.map((x) => x.rule));
        columns.push({ statement, index, column: out.name, from: [...new Set(t.sources.map((x) => x.column))], rule: t.direct ? t.sources[0]!.rule.column : 'derived', method: rule.method, derived: !t.direct });
      }
    });
  });
  return { columns, detectors: input.scrubber ? input.config.detectors : [], ...(input.analysis.statements.some((s) => s.predicates.length > 0) ? { predicates_allowed: uniquePredicates(input.analysis.statements.flatMap((s) => s.predicates)) } : {}) };
}

function uniquePredicates(uses: PredicateUse[]): PredicateUse[] {
  const seen = new Set<string>();
  return uses.filter((u) => {
    const k = `${u.column}\u0000${u.clause}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

const CLAUSE_NAMES: Record<PredicateUse['clause'], string> = {
  where: 'a WHERE condition',
  join: 'a join condition',
  having: 'a HAVING condition',
  order_by: 'ORDER BY',
  group_by: 'GROUP BY',
  window: 'a window definition',
  distinct_on: 'DISTINCT ON',
  filter: 'an aggregate FILTER',
  case: 'a CASE condition',
  returning_where: 'a WHERE condition',
  limit: 'LIMIT or OFFSET',
  rows: 'the arguments of a set-returning function or TABLESAMPLE (they decide how many rows there are)',
  distinct: 'DISTINCT, UNION, INTERSECT, EXCEPT or a recursive query\'s CYCLE (they compare values: how many rows come out tells equal ones apart)',
  error: 'an expression that may fail for some of its values (whether the statement fails tells them apart)',
  check: 'a write that a constraint or a domain checks (whether the write fails tells the values apart)',
  other: 'a condition',
};
