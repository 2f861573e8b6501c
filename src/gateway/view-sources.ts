/**
 * The relations under the views a statement names, for the access rules' `tables` condition: a
 * rule on `customers` must hold a read of a view over customers too, or every view would be a way
 * around it. Views (and materialized views) are followed through their definitions, as the
 * catalog cache read them (schema-cache.ts: `pg_get_viewdef`, every relation schema-qualified), to
 * the relations they read, at any depth, and a partition (or an inheriting table) counts as the
 * tables it belongs to; a name that may mean several relations (unqualified) is followed in each.
 */
import { classifyQuery, type Classification } from '../policy/risk/classify.js';
import { ancestorsOf } from '../policy/masking/lineage-relations.js';
import type { RelationInfo, SchemaView } from '../policy/masking/types.js';

/** Per catalog snapshot: `schema.name` of every relation under a view, by the view's oid. */
const sourcesBySnapshot = new WeakMap<SchemaView, Map<number, string[]>>();

/** The statements with the relations under their views added to `tables` (nested statements too).
 *  Throws when a view's definition cannot be read or parsed: the caller refuses (fails closed). */
export function withViewSources(statements: Classification[], schema: SchemaView): Classification[] {
  return statements.map((s) => ({ ...s, tables: expand(s.tables, schema), nested: withViewSources(s.nested, schema) }));
}

function expand(tables: string[], schema: SchemaView): string[] {
  const out = new Set(tables);
  for (const table of tables) {
    for (const rel of resolve(table, schema)) {
      for (const source of sourcesOf(rel, schema, new Set())) out.add(source);
      for (const parent of parentsOf(rel, schema)) out.add(parent);
    }
  }
  return [...out];
}

/** `schema.name` of the tables a relation is a partition of or inherits from: a partition's rows are its parent's. */
function parentsOf(rel: RelationInfo, schema: SchemaView): string[] {
  return ancestorsOf(rel, schema).map((p) => `${p.schema}.${p.name}`);
}

/** The relations a name as a statement writes it (`name` or `schema.name`) may mean. */
function resolve(table: string, schema: SchemaView): RelationInfo[] {
  const dot = table.indexOf('.');
  return dot < 0 ? schema.relations(null, table) : schema.relations(table.slice(0, dot), table.slice(dot + 1));
}

function sourcesOf(rel: RelationInfo, schema: SchemaView, visiting: Set<number>): string[] {
  if (rel.kind !== 'view' && rel.kind !== 'matview') return [];
  let memo = sourcesBySnapshot.get(schema);
  if (!memo) sourcesBySnapshot.set(schema, (memo = new Map()));
  const known = memo.get(rel.oid);
  if (known) return known;
  const shown = `${rel.schema}.${rel.name}`;
  if (rel.definition === undefined) throw new Error(`the definition of view ${shown} could not be read (DDL in progress)`);
  if (visiting.has(rel.oid)) return []; // defined in terms of itself: its other sources are counted on the way
  visiting.add(rel.oid);
  const parsed = classifyQuery(rel.definition);
  if (parsed.parseError !== null) throw new Error(`the definition of view ${shown} does not parse (${parsed.parseError})`);
  const sources = new Set<string>();
  for (const table of parsed.statements.flatMap(tablesOf)) {
    for (const under of resolve(table, schema)) {
      sources.add(`${under.schema}.${under.name}`);
      for (const parent of parentsOf(under, schema)) sources.add(parent);
      for (const deeper of sourcesOf(under, schema, visiting)) sources.add(deeper);
    }
  }
  visiting.delete(rel.oid);
  const all = [...sources];
  memo.set(rel.oid, all);
  return all;
}

function tablesOf(s: Classification): string[] {
  return [...s.tables, ...s.nested.flatMap(tablesOf)];
}
