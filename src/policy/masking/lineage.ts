/**
 * Statement analysis for masking: from the real PostgreSQL parse tree, which result columns
 * carry protected data (and whether unchanged), where protected columns choose rows, and which
 * statements must be refused because the gateway could not follow where protected data goes.
 *
 * Fails closed throughout: a name it cannot resolve is `unknown` taint (masked), a node it does
 * not understand is walked for every column it mentions, a statement it cannot analyse is
 * refused. It never throws.
 *
 * Files: lineage-select (queries), lineage-from (FROM items), lineage-expr (expressions),
 * lineage-dml (writes), lineage-ddl (schema changes that would break lineage or ask the
 * database to compare protected values), lineage-relations (tables and views), lineage-functions (which calls
 * are followed), lineage-scope (name resolution), lineage-taint (the algebra).
 */
import type { AnalysisEnv, CopyFormat, NameEffect, OutputColumn, QueryAnalysis, SessionNames, StatementAnalysis } from './types.js';
import { as, children, list, strings, unwrap, type Body } from './lineage-node.js';
import { clearTaint, copyTaint, describeTaint, isClear, unionTaints, unknownTaint } from './lineage-taint.js';
import { AnalysisContext } from './lineage-scope.js';
import { exprTaint } from './lineage-expr.js';
import { analyzeQueryNode } from './lineage-select.js';
import { rangeVarItem } from './lineage-from.js';
import { refuseTypeDefinition, renameOrMove, tableDdl } from './lineage-ddl.js';
import { plannerSettingRefusal } from './lineage-functions.js';
import { loadOwnValues } from './lineage-dml.js';
import { parseSql } from './parse.js';

export { relationTaints } from './lineage-relations.js';

export function analyzeQuery(text: string, env: AnalysisEnv): QueryAnalysis {
  let stmts: unknown[];
  try {
    stmts = (parseSql(text).stmts ?? []).map((s) => s.stmt);
  } catch (err) {
    return { statements: [], parseError: err instanceof Error ? err.message : String(err) };
  }
  // Names a statement of this same string defines are followed by the ones after it.
  const names = new OverlayNames(env.names);
  const statements = stmts.map((stmt) => {
    const analysis = analyzeStatementSafely(stmt, { ...env, names });
    names.apply(analysis.effects);
    return analysis;
  });
  return { statements, parseError: null };
}

function analyzeStatementSafely(stmt: unknown, env: AnalysisEnv): StatementAnalysis {
  try {
    const ctx = new AnalysisContext(env);
    const out = analyzeStatement(stmt, ctx);
    const result = out.result;
    const touches = ctx.touches || result === null || (result ?? []).some((c) => !isClear(c.taint));
    return { result, copy: out.copy ?? null, predicates: ctx.predicates, refusals: ctx.refusals, touchesProtected: touches, effects: out.effects ?? [] };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { result: null, copy: null, predicates: [], refusals: [`the gateway could not analyse this statement (${why})`], touchesProtected: true, effects: [] };
  }
}

interface StatementOutcome {
  result: OutputColumn[] | null;
  copy?: CopyFormat | null;
  effects?: NameEffect[];
}

const NONE: StatementOutcome = { result: [] };

/** Statements that define code the gateway cannot follow. */
const CODE_DEFINING: ReadonlyMap<string, string> = new Map([
  ['CreateFunctionStmt', 'CREATE FUNCTION / PROCEDURE'],
  ['CreateTrigStmt', 'CREATE TRIGGER'],
  ['RuleStmt', 'CREATE RULE'],
  ['CreateEventTrigStmt', 'CREATE EVENT TRIGGER'],
  ['CreateCastStmt', 'CREATE CAST'],
  ['CreateTransformStmt', 'CREATE TRANSFORM'],
  ['CreatePLangStmt', 'CREATE LANGUAGE'],
  ['LoadStmt', 'LOAD'],
]);

function analyzeStatement(node: unknown, ctx: AnalysisContext): StatementOutcome {
  const u = unwrap(node);
  if (!u) {
    ctx.refuse('a statement the gateway cannot read');
    return { result: null };
  }
  const [type, body] = u;
  const code = CODE_DEFINING.get(type);
  if (code) {
    ctx.refuse(`${code} is refused on a masking connection: the gateway cannot follow protected data through code it defines`);
    return NONE;
  }
  switch (type) {
    case 'SelectStmt':
      return select(body, node, ctx);
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      return { result: analyzeQueryNode(node, null, null, ctx) };
    case 'CopyStmt':
      return copy(body, ctx);
    case 'DeclareCursorStmt':
      return { result: [], effects: [{ kind: 'declare', name: String(body.portalname ?? ''), result: analyzeQueryNode(body.query, null, null, ctx) }] };
    case 'FetchStmt':
      return { result: body.ismove ? [] : named(ctx.env.names.cursor(String(body.portalname ?? ''))) };
    case 'ClosePortalStmt':
      return { result: [], effects: [{ kind: 'close', name: typeof body.portalname === 'string' ? body.portalname : null }] };
    case 'PrepareStmt':
      return { result: [], effects: [{ kind: 'prepare', name: String(body.name ?? ''), result: analyzeStatement(body.query, ctx).result }] };
    case 'ExecuteStmt':
      return execute(body, ctx);
    case 'DeallocateStmt':
      return { result: [], effects: [{ kind: 'deallocate', name: body.isall || typeof body.name !== 'string' ? null : body.name }] };
    case 'DiscardStmt':
      return { result: [], effects: body.target === 'DISCARD_ALL' ? [{ kind: 'discard' }] : [] };
    case 'ExplainStmt':
      // The plan's text is not data; what the explained statement does (EXPLAIN ANALYZE runs it) counts.
      analyzeStatement(body.query, ctx);
      return { result: [{ name: 'QUERY PLAN', taint: clearTaint() }] };
    case 'VariableSetStmt': {
      const refusal = body.kind === 'VAR_RESET' || body.kind === 'VAR_RESET_ALL' ? null : plannerSettingRefusal(String(body.name ?? ''));
      if (refusal !== null) ctx.refuse(refusal);
      return NONE;
    }
    case 'VariableShowStmt':
      return { result: body.name === 'all' ? ['name', 'setting', 'description'].map(clearColumn) : [clearColumn(String(body.name ?? 'setting'))] };
    case 'ViewStmt':
      // Allowed: reading the view follows its definition. Its own refusals count now.
      analyzeQueryNode(body.query, null, null, ctx);
      return NONE;
    case 'CreateTableAsStmt':
      return createTableAs(body, ctx);
    case 'DoStmt':
      ctx.refuse('DO is refused on a masking connection: the gateway cannot follow protected data through an anonymous code block');
      return NONE;
    case 'CallStmt':
      ctx.refuse('CALL is refused on a masking connection: the gateway cannot follow protected data through a procedure');
      return NONE;
    case 'DefineStmt':
      if (body.kind === 'OBJECT_AGGREGATE' || body.kind === 'OBJECT_OPERATOR') {
        ctx.refuse(`CREATE ${body.kind === 'OBJECT_AGGREGATE' ? 'AGGREGATE' : 'OPERATOR'} is refused on a masking connection: it defines code the gateway cannot follow`);
      }
      if (body.kind === 'OBJECT_TYPE') refuseTypeDefinition(ctx);
      return NONE;
    case 'CreateDomainStmt':
    case 'AlterDomainStmt':
    case 'CreateEnumStmt':
    case 'AlterEnumStmt':
    case 'CompositeTypeStmt':
    case 'CreateRangeStmt':
      refuseTypeDefinition(ctx);
      return NONE;
    case 'CreatePublicationStmt':
    case 'AlterPublicationStmt':
      ctx.refuse('publications are refused on a masking connection: they replicate rows past the gateway, unmasked');
      return NONE;
    case 'CreateForeignTableStmt':
    case 'ImportForeignSchemaStmt':
    case 'CreateForeignServerStmt':
    case 'AlterForeignServerStmt':
    case 'CreateUserMappingStmt':
    case 'AlterUserMappingStmt':
    case 'CreateSubscriptionStmt':
    case 'AlterSubscriptionStmt':
      // A foreign table over a loopback server reads this database's protected tables under a name no rule covers.
      ctx.refuse('foreign tables, servers, user mappings and subscriptions are refused on a masking connection: they bring in rows from past the gateway\'s catalog (a loopback server reads protected tables under names no rule covers)');
      return NONE;
    case 'RenameStmt':
    case 'AlterObjectSchemaStmt':
      renameOrMove(type, body, ctx);
      return NONE;
    case 'AlterTableStmt':
    case 'CreatePolicyStmt':
    case 'AlterPolicyStmt':
    case 'ClusterStmt':
    case 'IndexStmt':
    case 'CreateStmt':
      tableDdl(type, body, ctx);
      return NONE;
    default:
      // Other utility statements return no rows; any query or expression inside still counts.
      exprTaint(children(body), { items: [], parent: null, ctes: null }, ctx);
      return NONE;
  }
}

function clearColumn(name: string): OutputColumn {
  return { name, taint: clearTaint() };
}

function named(cols: OutputColumn[] | null | undefined): OutputColumn[] | null {
  return cols ? cols.map((c) => ({ name: c.name, taint: copyTaint(c.taint) })) : null;
}

function select(body: Body, node: unknown, ctx: AnalysisContext): StatementOutcome {
  const cols = analyzeQueryNode(node, null, null, ctx);
  if (!body.intoClause) return { result: cols };
  intoNewTable('SELECT INTO', cols, 'a new table', ctx);
  return NONE;
}

/** CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW copy rows into a relation no rule
 *  protects. */
function intoNewTable(what: string, cols: OutputColumn[] | null, destination: string, ctx: AnalysisContext): void {
  const t = cols === null ? unknownTaint('a query whose columns cannot be named') : unionTaints(cols.map((c) => c.taint));
  if (!isClear(t)) ctx.refuse(`${what} would copy protected data (${describeTaint(t)}) into ${destination} that no masking rule protects`);
}

function createTableAs(body: Body, ctx: AnalysisContext): StatementOutcome {
  const cols = analyzeStatement(body.query, ctx).result;
  const what = body.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : body.is_select_into ? 'SELECT INTO' : 'CREATE TABLE AS';
  if (!(body.into as Body | undefined)?.skipData) intoNewTable(what, cols, body.objtype === 'OBJECT_MATVIEW' ? 'a materialized view' : 'a new table', ctx);
  return NONE;
}

function execute(body: Body, ctx: AnalysisContext): StatementOutcome {
  const params = exprTaint(list(body.params), { items: [], parent: null, ctes: null }, ctx);
  if (!isClear(params)) ctx.refuse(`EXECUTE would pass protected data (${describeTaint(params)}) as a parameter, where the gateway cannot follow it`);
  return { result: named(ctx.env.names.prepared(String(body.name ?? ''))) };
}

function copy(body: Body, ctx: AnalysisContext): StatementOutcome {
  if (body.is_from) {
    // A server file (a data file, the server's log) or a program's output becomes rows the user reads.
    if (body.filename !== undefined || body.is_program) {
      ctx.refuse(`COPY FROM ${body.is_program ? 'a program' : 'a server file'} is refused on a masking connection: what it loads (the server's own files hold table data and statements) is not masked`);
    }
    // The client's own values: into a hash column their tokens read back are a dictionary
    // (lineage-dml.ts chosenTokens), into a keyed one each is compared with the values there.
    loadOwnValues(body.relation as Body, strings(body.attlist), ctx);
    return NONE;
  }
  let cols: OutputColumn[] | null;
  if (body.query) {
    cols = analyzeStatement(body.query, ctx).result;
  } else {
    const item = rangeVarItem(as(body.relation, 'RangeVar') ?? (body.relation as Body), { items: [], parent: null, ctes: null }, ctx);
    const attlist = strings(body.attlist);
    cols = attlist.length > 0 ? attlist.map((n) => ({ name: n, taint: item.named.find((c) => c.name === n)?.taint ?? (item.open ? item.whole : unknownTaint(`column ${n}`)) })) : item.star;
    for (const c of cols ?? []) ctx.read(c.taint);
  }
  if (body.filename !== undefined || body.is_program) {
    intoNewTable(body.is_program ? 'COPY TO PROGRAM' : 'COPY TO a server file', cols, body.is_program ? 'a program' : 'a server file', ctx);
    return NONE;
  }
  const typeOf = body.query ? () => undefined : columnTypes(as(body.relation, 'RangeVar') ?? (body.relation as Body), ctx);
  return { result: cols ? cols.map((c) => ({ name: c.name, taint: copyTaint(c.taint), ...withType(typeOf(c.name)) })) : null, copy: copyFormat(list(body.options)) };
}

/** The type of a table's column by name, where every relation the name can mean agrees on it. */
function columnTypes(rv: Body, ctx: AnalysisContext): (column: string) => number | undefined {
  const schema = typeof rv.schemaname === 'string' ? rv.schemaname : null;
  const rels = typeof rv.relname === 'string' ? ctx.env.schema.relations(schema, rv.relname) : [];
  return (column) => {
    const types = new Set(rels.map((r) => r.columns.find((c) => c.name === column)?.typeOid ?? 0));
    const only = types.size === 1 ? [...types][0]! : 0;
    return only === 0 ? undefined : only;
  };
}

function withType(typeOid: number | undefined): { typeOid?: number } {
  return typeOid === undefined ? {} : { typeOid };
}

/** COPY options as the parse tree gives them, defaults per the COPY reference. */
export function copyFormat(options: unknown[]): CopyFormat {
  const given = new Map<string, unknown>();
  for (const o of options) {
    const d = as(o, 'DefElem');
    if (d && typeof d.defname === 'string') given.set(d.defname, d.arg);
  }
  const text = (key: string): string | undefined => {
    const arg = given.get(key);
    return typeof as(arg, 'String')?.sval === 'string' ? (as(arg, 'String')!.sval as string) : undefined;
  };
  const rawFormat = text('format');
  const format: CopyFormat['format'] = rawFormat === 'csv' || rawFormat === 'binary' ? rawFormat : 'text';
  const quote = text('quote') ?? '"';
  const encoding = text('encoding');
  return {
    ...(encoding === undefined ? {} : { encoding }),
    format,
    delimiter: text('delimiter') ?? (format === 'csv' ? ',' : '\t'),
    null: text('null') ?? (format === 'csv' ? '' : '\\N'),
    quote,
    escape: text('escape') ?? quote,
    header: given.has('header') && booleanOption(given.get('header')),
  };
}

/** A DefElem option's boolean value as PostgreSQL reads it (no argument: true). */
export function booleanOption(arg: unknown): boolean {
  if (arg === undefined || arg === null) return true;
  const b = as(arg, 'Boolean');
  if (b) return b.boolval === true;
  const i = as(arg, 'Integer');
  if (i) return Number(i.ival ?? 0) !== 0;
  const s = as(arg, 'String')?.sval;
  return typeof s === 'string' && ['true', 'on', '1', 'yes', 'match'].includes(s.toLowerCase());
}

/** SessionNames with this query string's own PREPARE / DECLARE / DEALLOCATE / CLOSE applied. */
class OverlayNames implements SessionNames {
  private readonly prep = new Map<string, OutputColumn[] | null | undefined>();
  private readonly cursors = new Map<string, OutputColumn[] | null | undefined>();
  private preparedGone = false;
  private cursorsGone = false;

  constructor(private readonly base: SessionNames) {}

  prepared(name: string): OutputColumn[] | null | undefined {
    if (this.prep.has(name)) return this.prep.get(name);
    return this.preparedGone ? undefined : this.base.prepared(name);
  }

  cursor(name: string): OutputColumn[] | null | undefined {
    if (this.cursors.has(name)) return this.cursors.get(name);
    return this.cursorsGone ? undefined : this.base.cursor(name);
  }

  apply(effects: NameEffect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case 'prepare':
          this.prep.set(e.name, e.result);
          break;
        case 'declare':
          this.cursors.set(e.name, e.result);
          break;
        case 'deallocate':
          if (e.name === null) {
            this.prep.clear();
            this.preparedGone = true;
          } else this.prep.set(e.name, undefined);
          break;
        case 'close':
          if (e.name === null) {
            this.cursors.clear();
            this.cursorsGone = true;
          } else this.cursors.set(e.name, undefined);
          break;
        case 'discard':
          this.prep.clear();
          this.cursors.clear();
          this.preparedGone = this.cursorsGone = true;
          break;
      }
    }
  }
}
