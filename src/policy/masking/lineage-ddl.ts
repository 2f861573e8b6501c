/**
 * Schema changes on a masking connection. Refused where they would take protected data out from
 * under its rules (renaming a protected table or column, expressions the server evaluates later)
 * or where the database would compare protected values and say, by failing, how they compare:
 * types of one's own (their checks and input functions run on what is cast or written), unique
 * keys and foreign keys over protected columns, CLUSTER on an index over one, a new type for one.
 * Writes into columns that constraints read are check predicates instead (lineage-dml.ts).
 */
import type { RelationInfo } from './types.js';
import { as, children, list, strings, unwrap, type Body } from './lineage-node.js';
import { describeTaint, isClear } from './lineage-taint.js';
import type { AnalysisContext, Scope } from './lineage-scope.js';
import { exprTaint } from './lineage-expr.js';
import { rangeVarItem } from './lineage-from.js';
import { columnRule, descendantsOf } from './lineage-relations.js';

export function refuseTypeDefinition(ctx: AnalysisContext): void {
  ctx.refuse('defining, renaming or moving a type or domain is refused on a masking connection: a cast or a write to a type runs its checks and input function on the value, so whether it fails would tell protected values apart (a domain pg_temp.text would even stand in for the built-in type in `ssn::text`)');
}

/** RenameStmt and AlterObjectSchemaStmt: of a type or domain; of a schema, or a protected table
 *  or column, which would take it out from under its rule. */
export function renameOrMove(type: string, body: Body, ctx: AnalysisContext): void {
  const kind = type === 'RenameStmt' ? body.renameType : body.objectType;
  if (kind === 'OBJECT_TYPE' || kind === 'OBJECT_DOMAIN') refuseTypeDefinition(ctx);
  // Rules name schemas too (`bank.customers.ssn`); the catalog cannot say here which of the
  // schema's tables they match, so no schema is renamed through a masking connection.
  if (type === 'RenameStmt' && kind === 'OBJECT_SCHEMA') {
    ctx.refuse(`renaming schema ${String(body.subname)} is refused on a masking connection: masking rules name schemas, and its tables' rules would no longer match`);
  }
  if (holdsProtected(body.relation, ctx)) {
    const verb = type === 'RenameStmt' ? 'renaming' : 'moving';
    ctx.refuse(`${verb} ${String((body.relation as Body).relname)}, which holds protected columns, is refused on a masking connection: its masking rules would no longer match`);
  }
}

/** CREATE TABLE, CREATE INDEX, ALTER TABLE, CLUSTER, CREATE/ALTER POLICY. */
export function tableDdl(type: string, body: Body, ctx: AnalysisContext): void {
  const empty: Scope = { items: [], parent: null, ctes: null };
  switch (type) {
    case 'ClusterStmt':
      if (holdsProtected(body.relation, ctx)) ctx.refuse(CLUSTERING);
      return;
    case 'IndexStmt':
      if (body.unique) uniqueKeyOver(body, list(body.indexParams).map((p) => as(p, 'IndexElem')?.name).filter(isString), ctx);
      exprTaint(children(body), empty, ctx);
      return;
    case 'CreateStmt':
      foreignKeysToProtected(body, ctx);
      exprTaint(children(body), empty, ctx);
      return;
    case 'AlterTableStmt':
      foreignKeysToProtected(body, ctx);
      uniqueKeyOver(body, keyColumnsAdded(body), ctx);
      alteredColumns(body, ctx);
      inheritanceChanged(body, ctx);
      expressionsOverRelation(type, body, ctx);
      return;
    default: // CreatePolicyStmt, AlterPolicyStmt
      expressionsOverRelation(type, body, ctx);
  }
}

const CLUSTERING = 'CLUSTER of a table that holds protected columns is refused on a masking connection: its rows would then come back in the order of an index, which may be over a protected column (an ORDER BY it no longer needs)';

const isString = (n: unknown): n is string => typeof n === 'string';

function relationsOf(rv: unknown, ctx: AnalysisContext): RelationInfo[] {
  const r = rv as Body | undefined;
  return r && typeof r.relname === 'string' ? ctx.env.schema.relations(typeof r.schemaname === 'string' ? r.schemaname : null, r.relname) : [];
}

function holdsProtected(rv: unknown, ctx: AnalysisContext): boolean {
  return relationsOf(rv, ctx).some((rel) => rel.columns.some((c) => columnRule(rel, c.name, ctx.env) !== null));
}

const LINK_CHANGES: Record<string, string> = {
  AT_AddInherit: 'INHERIT', AT_DropInherit: 'NO INHERIT', AT_AttachPartition: 'ATTACH PARTITION', AT_DetachPartition: 'DETACH PARTITION', AT_DetachPartitionFinalize: 'DETACH PARTITION',
};

/**
 * ALTER TABLE … INHERIT / NO INHERIT / ATTACH PARTITION / DETACH PARTITION of a relation that
 * holds protected columns (by its own rules, a parent's, or a child's). A parent's rows include its
 * children's, under the parent's names, which no rule may match; a detached partition is a table
 * of its own, which its parent's rules no longer cover. Refused even where a rule would follow the
 * new link: in one Query, `ALTER TABLE customers INHERIT p; SELECT ssn FROM p` is analysed before
 * the catalog can know the link.
 */
function inheritanceChanged(body: Body, ctx: AnalysisContext): void {
  for (const cmd of list(body.cmds)) {
    const c = as(cmd, 'AlterTableCmd');
    const verb = c ? LINK_CHANGES[String(c.subtype)] : undefined;
    if (!c || verb === undefined) continue;
    const child = (c.subtype === 'AT_AddInherit' || c.subtype === 'AT_DropInherit' ? body.relation : as(c.def, 'PartitionCmd')?.name) as Body | undefined;
    const rels = relationsOf(child, ctx);
    const held = rels.some((rel) => [rel, ...descendantsOf(rel, ctx.env.schema)].some((r) => r.columns.some((col) => columnRule(r, col.name, ctx.env) !== null)));
    if (held) {
      const name = `${typeof child?.schemaname === 'string' ? `${child.schemaname}.` : ''}${String(child?.relname)}`;
      ctx.refuse(`ALTER TABLE … ${verb} of ${name}, which holds protected columns, is refused on a masking connection: it would move them out from under their rules (a parent shows its children's rows under its own names; a detached partition is a table no rule names)`);
    }
  }
}

/** `schema.table.column` of the first of `columns(rel)` a rule protects, in any of `rels`. */
function firstProtected(rels: RelationInfo[], columns: (rel: RelationInfo) => string[], ctx: AnalysisContext): string | undefined {
  for (const rel of rels) {
    const c = columns(rel).find((name) => columnRule(rel, name, ctx.env) !== null);
    if (c !== undefined) return `${rel.schema}.${rel.name}.${c}`;
  }
  return undefined;
}

/**
 * A FOREIGN KEY that references a protected column answers, for every row written, whether its
 * value is among that column's values: with one from a table of guesses to a copy of the account
 * numbers, `INSERT INTO guesses VALUES ('…')` fails exactly when no account has it (the guess is a
 * value of the statement's own, into a column no rule protects, so the write rules allow it). A
 * referenced relation the catalog does not know cannot be shown free of them. Added on a protected
 * column of a table with rows, one checks them all at once against the referenced values.
 */
function foreignKeysToProtected(body: Body, ctx: AnalysisContext): void {
  const own = relationsOf(body.relation, ctx);
  for (const fk of foreignKeys(body)) {
    const referenced = relationsOf(fk.pktable, ctx);
    const named = strings(fk.pk_attrs);
    const target = referenced.length === 0
      ? `${String((fk.pktable as Body | undefined)?.relname)}, a relation the gateway's catalog does not know`
      : firstProtected(referenced, (rel) => (named.length > 0 ? named : rel.columns.map((c) => c.name)), ctx); // none named: its primary key, any column
    if (target !== undefined) {
      ctx.refuse(`a FOREIGN KEY referencing ${referenced.length === 0 ? '' : 'protected column '}${target} is refused on a masking connection: every row written would tell whether its value is among the referenced values`);
    }
    const from = firstProtected(own, () => strings(fk.fk_attrs), ctx);
    if (from !== undefined) ctx.refuse(`a FOREIGN KEY on protected column ${from} is refused on a masking connection: checking the rows it holds would tell whether each value is among the referenced ones`);
  }
}

/** The FOREIGN KEY constraints anywhere in a statement (column and table constraints, ALTER TABLE … ADD). */
function foreignKeys(body: Body): Body[] {
  const found: Body[] = [];
  const walk = (nodes: unknown[]): void => {
    for (const n of nodes) {
      const c = as(n, 'Constraint');
      if (c?.contype === 'CONSTR_FOREIGN') found.push(c);
      const u = unwrap(n);
      if (u) walk(children(u[1]));
    }
  };
  walk(children(body));
  return found;
}

/**
 * A unique key (or exclusion constraint) built over a protected column compares the values it
 * holds: with a guess written into one row first (a value of one's own, allowed into a `redact`
 * column), `CREATE UNIQUE INDEX ON customers (email)` fails exactly when some customer has it.
 */
function uniqueKeyOver(body: Body, columns: string[], ctx: AnalysisContext): void {
  const guarded = firstProtected(relationsOf(body.relation, ctx), () => columns, ctx);
  if (guarded !== undefined) ctx.refuse(`a unique key over protected column ${guarded} is refused on a masking connection: building it compares the values the column holds, so whether it fails tells equal ones apart (a guess written into one row first)`);
}

/** The columns of the UNIQUE, PRIMARY KEY and exclusion constraints an ALTER TABLE adds. */
function keyColumnsAdded(body: Body): string[] {
  return list(body.cmds).flatMap((cmd) => {
    const c = as(as(cmd, 'AlterTableCmd')?.def, 'Constraint');
    if (!c) return [];
    if (c.contype === 'CONSTR_PRIMARY' || c.contype === 'CONSTR_UNIQUE') return strings(c.keys);
    if (c.contype === 'CONSTR_EXCLUSION') return list(c.exclusions).map((e) => as(list(as(e, 'List')?.items)[0], 'IndexElem')?.name).filter(isString);
    return [];
  });
}

/** ALTER TABLE … CLUSTER ON (see CLUSTERING), and a new type for a protected column: converting
 *  each value may fail for some (`varchar(20)` for longer emails). */
function alteredColumns(body: Body, ctx: AnalysisContext): void {
  const rels = relationsOf(body.relation, ctx);
  for (const cmd of list(body.cmds)) {
    const c = as(cmd, 'AlterTableCmd');
    if (c?.subtype === 'AT_ClusterOn' && holdsProtected(body.relation, ctx)) ctx.refuse(CLUSTERING);
    if (c?.subtype !== 'AT_AlterColumnType' || typeof c.name !== 'string') continue;
    const retyped = firstProtected(rels, () => [c.name as string], ctx);
    if (retyped !== undefined) ctx.refuse(`changing the type of protected column ${retyped} is refused on a masking connection: converting its values may fail for some of them, which would tell them apart`);
  }
}

/** ALTER TABLE (generated columns, USING, defaults) and row-level security policies: expressions
 *  over the table's columns that the server evaluates later, out of the gateway's sight. */
function expressionsOverRelation(type: string, body: Body, ctx: AnalysisContext): void {
  const rv = (body.relation ?? body.table) as Body | undefined;
  const scope: Scope = { items: [], parent: null, ctes: null };
  if (rv && typeof rv.relname === 'string') scope.items.push(rangeVarItem(rv, scope, ctx));
  const { relation: _r, table: _t, ...rest } = body;
  const t = exprTaint(children(rest), scope, ctx);
  if (!isClear(t)) {
    const what = type === 'AlterTableStmt' ? 'ALTER TABLE' : type === 'CreatePolicyStmt' ? 'CREATE POLICY' : 'ALTER POLICY';
    ctx.refuse(`${what} with an expression over protected data (${describeTaint(t)}) is refused on a masking connection: the server would evaluate it out of the gateway's sight`);
  }
}
