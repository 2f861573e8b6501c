/**
 * The gateway's view of one connection's upstream catalog (the SchemaView masking analyses
 * statements against), read on a connection of the gateway's own and cached.
 *
 * - Loaded on first use; concurrent callers share one load.
 * - Fresh for `ttlMs`; past it the cached snapshot is still returned, and one reload starts in
 *   the background (stale-while-revalidate).
 * - `invalidate()` (after DDL passed through hoop): the next `snapshot()` waits for a load that
 *   began after the call, never for one that began before it.
 * - `refreshFor(names)`: a statement names a relation the snapshot lacks (created outside hoop):
 *   reload, at most once per `refreshIntervalMs`, so a client cannot make the gateway reload the
 *   catalog on every statement.
 * - A failed load rejects with a message a client may see (SchemaLoadError); the operator's
 *   detail is its `detail`. The previous snapshot stays available as `last` (callers decide).
 * - A view whose definition DDL in progress keeps locked has none (`unreadViews`): such a
 *   snapshot counts as stale after `refreshIntervalMs` instead of the TTL.
 *
 * Each load opens a connection of its own and closes it (no idle backend per gateway connection).
 * The session reads with search_path pg_catalog, so `pg_get_viewdef` names every relation outside
 * pg_catalog with its schema: a view's definition is never ambiguous.
 */
import { HoopError, errorMessage } from '../errors.js';
import { AdminQueryError, openAdminConnection, type QueryResult } from '../protocols/postgres/admin-query.js';
import { UpstreamConnectError, type Dial } from '../protocols/postgres/upstream.js';
import type { UpstreamConfig } from '../protocols/engine.js';
import type { FunctionKind, RelationColumn, RelationInfo, RelationKind, SchemaView } from '../policy/masking/types.js';
import { SHADOWABLE_TYPES } from '../policy/masking/lineage-expr.js';

const DEFAULT_TTL_MS = 30_000;
const DEFAULT_REFRESH_INTERVAL_MS = 1_000;
const BUILTIN_SCHEMA = 'pg_catalog';
/** `pg_temp` names the session's own temporary schema, pg_temp_N: which N is not tracked. */
const TEMP_ALIAS = 'pg_temp';
const TEMP_SCHEMA = /^pg_temp_\d+$/;

const RELATION_KINDS: Record<string, RelationKind> = { r: 'table', v: 'view', m: 'matview', f: 'foreign', p: 'partitioned' };

/**
 * The whole catalog the analysis needs in one statement (one snapshot, one round trip): a row
 * per relation ('r'), per live column ('c'), per function name and schema ('f'), and per
 * partition or inheritance link ('i': child, parent), per FOREIGN KEY column ('k': relation and
 * attnum, referenced relation and attnum), and per type outside pg_catalog named
 * like a built-in type the analysis treats as a cast that cannot fail ('t').
 *
 * pg_get_viewdef takes AccessShareLock on the view and on every relation its query names, so it
 * would wait behind DDL in progress (`BEGIN; ALTER TABLE t ...` in any session, even the hoop
 * session that asked for this load). Such views (an AccessExclusiveLock held or awaited on the
 * view or on a relation its rule depends on) are left without a definition and flagged; the
 * snapshot is then incomplete and is reloaded soon. A lock taken between the check and the call
 * fails the load at lock_timeout instead (the next one retries).
 */
const CATALOG_QUERY = `
WITH locked AS (
  SELECT l.relation FROM pg_catalog.pg_locks l
   WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
     AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
     AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
), unreadable AS (
  SELECT r.ev_class AS relid
    FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                               AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   WHERE d.refobjid IN (SELECT relation FROM locked)
  UNION SELECT relation FROM locked
)
SELECT 'r' AS entry, c.oid::text AS oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
       NULL::text AS attnum, NULL::text AS type_oid,
       CASE WHEN c.relkind IN ('v', 'm') AND c.oid NOT IN (SELECT relid FROM unreadable) THEN pg_catalog.pg_get_viewdef(c.oid) END AS definition,
       (c.relkind IN ('v', 'm') AND c.oid IN (SELECT relid FROM unreadable))::text AS unread,
       coalesce((SELECT pg_catalog.string_agg(DISTINCT k::text, ',') FROM pg_catalog.pg_constraint x, pg_catalog.unnest(x.conkey) k
                  WHERE x.conrelid = c.oid AND x.contype = 'c'), '') || '|' ||
       coalesce((SELECT pg_catalog.string_agg(DISTINCT k::text, ',') FROM (
                   SELECT pg_catalog.unnest(x.conkey) AS k FROM pg_catalog.pg_constraint x WHERE x.conrelid = c.oid AND x.contype IN ('f', 'x', 'u', 'p')
                   UNION ALL SELECT pg_catalog.unnest(i.indkey::pg_catalog.int2[]) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique
                   UNION ALL SELECT 0 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
                 ) keys), '') AS flag
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
UNION ALL
SELECT 'c', a.attrelid::text, NULL, a.attname::text, NULL, a.attnum::text, a.atttypid::text, NULL, NULL, (t.typtype = 'd')::text
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
 WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT DISTINCT 'f', NULL, n.nspname::text, p.proname::text, p.proretset::text, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
UNION ALL
SELECT 'i', i.inhrelid::text, NULL, NULL, NULL, NULL, i.inhparent::text, NULL, NULL, NULL
  FROM pg_catalog.pg_inherits i
UNION ALL
SELECT 'k', x.conrelid::text, NULL, NULL, NULL, x.conkey[i]::text, x.confrelid::text, x.confkey[i]::text, NULL, NULL
  FROM pg_catalog.pg_constraint x, pg_catalog.generate_subscripts(x.conkey, 1) AS i
 WHERE x.contype = 'f'
UNION ALL
SELECT DISTINCT 't', NULL, NULL, t.typname::text, NULL, NULL, NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_type t
 WHERE t.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace AND t.typname IN (${[...SHADOWABLE_TYPES].map((n) => `'${n}'`).join(', ')})`;

/** A function name in one schema; `returnsSet` when any of its overloads there returns a set. */
export interface CatalogFunction {
  schema: string;
  name: string;
  returnsSet: boolean;
}

/** One load of the catalog, indexed for O(1) lookups. */
export class SchemaSnapshot implements SchemaView {
  private readonly byOid = new Map<number, RelationInfo>();
  /** schema -> name -> relation */
  private readonly bySchema = new Map<string, Map<string, RelationInfo>>();
  /** name -> that name in every schema */
  private readonly byName = new Map<string, RelationInfo[]>();
  /** name -> that name in every pg_temp_N */
  private readonly tempByName = new Map<string, RelationInfo[]>();
  /** function name -> the schemas defining it */
  private readonly functionSchemas = new Map<string, Set<string>>();
  /** `schema.name` of the functions some overload of which returns a set (proretset) */
  private readonly setReturning = new Set<string>();
  private readonly shadowedTypes: Set<string>;

  constructor(
    relations: RelationInfo[],
    functions: CatalogFunction[],
    /** Views and materialized views left without `definition` (DDL in progress held their locks):
     *  their columns' lineage is unknown, and the cache reloads this snapshot soon. */
    readonly unreadViews: RelationInfo[],
    readonly version: number,
    /** When the load began (ms on the cache's clock): the catalog is at least this recent. */
    readonly loadedAt: number,
    /** Names of SHADOWABLE_TYPES that a type outside pg_catalog also has. */
    shadowedTypes: string[] = [],
  ) {
    this.shadowedTypes = new Set(shadowedTypes);
    for (const rel of relations) {
      this.byOid.set(rel.oid, rel);
      let names = this.bySchema.get(rel.schema);
      if (!names) this.bySchema.set(rel.schema, (names = new Map()));
      names.set(rel.name, rel);
      push(this.byName, rel.name, rel);
      if (TEMP_SCHEMA.test(rel.schema)) push(this.tempByName, rel.name, rel);
    }
    for (const f of functions) {
      let schemas = this.functionSchemas.get(f.name);
      if (!schemas) this.functionSchemas.set(f.name, (schemas = new Set()));
      schemas.add(f.schema);
      if (f.returnsSet) this.setReturning.add(`${f.schema}.${f.name}`);
    }
  }

  /** Qualified: at most one, except `pg_temp`, which may be any session's temporary schema (all are returned). */
  relations(schema: string | null, name: string): RelationInfo[] {
    if (schema === null) return [...(this.byName.get(name) ?? [])];
    if (schema === TEMP_ALIAS) return [...(this.tempByName.get(name) ?? [])];
    const rel = this.bySchema.get(schema)?.get(name);
    return rel ? [rel] : [];
  }

  relationByOid(oid: number): RelationInfo | undefined {
    return this.byOid.get(oid);
  }

  functionKind(schema: string | null, name: string): FunctionKind {
    const schemas = this.functionSchemas.get(name);
    if (!schemas) return 'unknown';
    if (schema === null) {
      if (schemas.size > (schemas.has(BUILTIN_SCHEMA) ? 1 : 0)) return 'user';
      return 'builtin';
    }
    if (schema === TEMP_ALIAS) return [...schemas].some((s) => TEMP_SCHEMA.test(s)) ? 'user' : 'unknown';
    if (!schemas.has(schema)) return 'unknown';
    return schema === BUILTIN_SCHEMA ? 'builtin' : 'user';
  }

  returnsSet(schema: string | null, name: string): boolean {
    const schemas = schema === null ? (this.functionSchemas.get(name) ?? []) : [schema];
    for (const s of schemas) if (this.setReturning.has(`${s}.${name}`)) return true;
    return false;
  }

  typeShadowed(name: string): boolean {
    return this.shadowedTypes.has(name);
  }

  userFunctionSchemas(name: string): string[] {
    const schemas = this.functionSchemas.get(name);
    return schemas ? [...schemas].filter((s) => s !== BUILTIN_SCHEMA).sort() : [];
  }

  /** Number of relations (for logs and metrics). */
  get relationCount(): number {
    return this.byOid.size;
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/**
 * Loading the catalog failed. `message` is safe for the client (no host, user or password, no
 * server text); `detail` is for the gateway's log.
 */
export class SchemaLoadError extends HoopError {
  readonly detail: string;
  constructor(cause: unknown) {
    super('HOOP_UPSTREAM', `${clientReason(cause)}; an administrator can find the cause in the gateway's log`, { cause });
    this.detail = `loading the catalog failed: ${errorMessage(cause)}`;
  }
}

function clientReason(cause: unknown): string {
  if (cause instanceof UpstreamConnectError) return `the gateway could not read the database catalog: ${cause.clientMessage.replace(/; an administrator can find.*$/, '')}`;
  if (cause instanceof AdminQueryError) return `the database refused the gateway's catalog query (SQLSTATE ${cause.sqlstate})`;
  return 'the gateway could not read the database catalog';
}

export interface SchemaCacheOptions {
  /** How long a snapshot is fresh (default 30 s). */
  ttlMs?: number;
  /** Least time between reloads for relations a snapshot lacks, and between background retries (default 1 s). */
  refreshIntervalMs?: number;
  /** The clock (ms); injectable for tests. */
  now?: () => number;
  /** Called when a background reload fails (the snapshot in use stays). */
  onBackgroundError?: (err: SchemaLoadError) => void;
}

/** A connection's catalog cache: one per gateway connection. */
export class SchemaCache {
  private readonly ttlMs: number;
  private readonly refreshIntervalMs: number;
  private readonly now: () => number;
  private readonly onBackgroundError: (err: SchemaLoadError) => void;
  private current: SchemaSnapshot | null = null;
  /** The generation `current` was loaded in; `invalidate()` starts a new one. */
  private currentGeneration = -1;
  private generation = 0;
  private inflight: { generation: number; promise: Promise<SchemaSnapshot> } | null = null;
  private versions = 0;
  private lastBackgroundAttempt = Number.NEGATIVE_INFINITY;
  private lastMissReload = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly upstream: UpstreamConfig,
    private readonly dial: Dial,
    options: SchemaCacheOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.refreshIntervalMs = options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS;
    this.now = options.now ?? Date.now;
    this.onBackgroundError = options.onBackgroundError ?? (() => {});
  }

  /** The last snapshot loaded, however old, or null: for callers that decide to use it after a failed load. */
  get last(): SchemaSnapshot | null {
    return this.current;
  }

  /** The cached snapshot while it is fresh (or stale, reloading in the background); else a load. */
  snapshot(): Promise<SchemaSnapshot> {
    return Promise.resolve(this.ready() ?? this.load());
  }

  /** What snapshot() would give without waiting, or null when it would have to load: for a caller
   *  that decides without a turn of the event loop when it can (the hot path). */
  ready(): SchemaSnapshot | null {
    const cur = this.current;
    if (!cur || this.currentGeneration !== this.generation) return null;
    // An incomplete snapshot (views it could not read) is worth replacing as soon as allowed.
    const ttl = cur.unreadViews.length > 0 ? Math.min(this.ttlMs, this.refreshIntervalMs) : this.ttlMs;
    if (this.now() - cur.loadedAt >= ttl) this.reloadInBackground();
    return cur;
  }

  /** DDL passed through hoop: the next snapshot() reflects a catalog read after this call. */
  invalidate(): void {
    this.generation++;
  }

  /**
   * The snapshot, reloaded first when it lacks one of `names` (a relation created outside hoop),
   * at most once per refresh interval. Names as libpg-query gives them (folded unless quoted).
   */
  async refreshFor(names: { schema: string | null; name: string }[]): Promise<SchemaSnapshot> {
    const snap = await this.snapshot();
    if (names.every((n) => snap.relations(n.schema, n.name).length > 0)) return snap;
    const now = this.now();
    if (now - this.lastMissReload < this.refreshIntervalMs) {
      // Share a reload already under way, else make do with what there is.
      const pending = this.inflight;
      return pending && pending.generation === this.generation ? pending.promise : snap;
    }
    this.lastMissReload = now;
    this.generation++;
    return this.load();
  }

  private reloadInBackground(): void {
    if (this.inflight?.generation === this.generation) return;
    if (this.now() - this.lastBackgroundAttempt < this.refreshIntervalMs) return;
    this.lastBackgroundAttempt = this.now();
    this.load().catch((err: unknown) => this.onBackgroundError(err as SchemaLoadError));
  }

  /** A load for the current generation: the one under way, or a new one. */
  private load(): Promise<SchemaSnapshot> {
    if (this.inflight && this.inflight.generation === this.generation) return this.inflight.promise;
    const generation = this.generation;
    const promise = this.fetch().then((snap) => {
      // Loads may overlap across generations: the newest generation's snapshot wins.
      if (generation >= this.currentGeneration) {
        this.current = snap;
        this.currentGeneration = generation;
      }
      return snap;
    });
    const entry = { generation, promise };
    this.inflight = entry;
    const clear = () => {
      if (this.inflight === entry) this.inflight = null;
    };
    promise.then(clear, clear);
    return promise;
  }

  private async fetch(): Promise<SchemaSnapshot> {
    const startedAt = this.now();
    let results: QueryResult[];
    try {
      const conn = await openAdminConnection(this.upstream, this.dial);
      try {
        results = await conn.query(CATALOG_QUERY);
      } finally {
        await conn.close().catch(() => {});
      }
      const [result] = results;
      if (results.length !== 1 || !result) throw new HoopError('HOOP_UPSTREAM', `the catalog query returned ${results.length} results`);
      return parseCatalog(result, ++this.versions, startedAt);
    } catch (err) {
      throw new SchemaLoadError(err);
    }
  }
}

/** Builds a snapshot from the catalog query's rows (see CATALOG_QUERY). */
function parseCatalog(result: QueryResult, version: number, loadedAt: number): SchemaSnapshot {
  const relations = new Map<number, RelationInfo>();
  const columns: { relid: number; column: RelationColumn }[] = [];
  const functions: CatalogFunction[] = [];
  const unread: RelationInfo[] = [];
  const links: { child: number; parent: number }[] = [];
  const shadowed: string[] = [];
  const foreignKeys: { relid: number; attnum: number; refRelid: number; refAttnum: number }[] = [];
  /** Per relation, the attnums its CHECK constraints read, and those its keys and other
   *  constraints read (0: every column). */
  const checkedAttnums = new Map<number, [number[], number[]]>();
  for (const [entry, oid, schema, name, kind, attnum, typeOid, definition, unreadFlag, flag] of result.rows) {
    switch (entry) {
      case 'r': {
        const rel: RelationInfo = { oid: toInt(oid), schema: need(schema), name: need(name), kind: RELATION_KINDS[need(kind)] ?? 'other', columns: [] };
        if (definition !== null && definition !== undefined) rel.definition = definition;
        if (unreadFlag === 'true') unread.push(rel);
        if (flag && flag !== '|') checkedAttnums.set(rel.oid, flag.split('|').map((part) => (part === '' ? [] : part.split(',').map(toInt))) as [number[], number[]]);
        relations.set(rel.oid, rel);
        break;
      }
      case 'c': {
        const column: RelationColumn = { name: need(name), attnum: toInt(attnum), typeOid: toInt(typeOid) };
        if (flag === 'true') column.domain = true;
        columns.push({ relid: toInt(oid), column });
        break;
      }
      case 't':
        shadowed.push(need(name));
        break;
      case 'k':
        foreignKeys.push({ relid: toInt(oid), attnum: toInt(attnum), refRelid: toInt(typeOid), refAttnum: toInt(definition) });
        break;
      case 'f':
        functions.push({ schema: need(schema), name: need(name), returnsSet: kind === 'true' });
        break;
      case 'i':
        links.push({ child: toInt(oid), parent: toInt(typeOid) });
        break;
      default:
        throw new HoopError('HOOP_UPSTREAM', `unexpected catalog row kind ${String(entry)}`);
    }
  }
  for (const { relid, column } of columns) relations.get(relid)?.columns.push(column);
  for (const { child, parent } of links) {
    const rel = relations.get(child);
    if (rel) (rel.parents ??= []).push(parent);
    const up = relations.get(parent);
    if (up) (up.children ??= []).push(child);
  }
  for (const rel of relations.values()) rel.columns.sort((a, b) => a.attnum - b.attnum);
  for (const [oid, [checks, keys]] of checkedAttnums) {
    const rel = relations.get(oid);
    if (!rel) continue;
    const named = (attnums: number[]) => rel.columns.filter((c) => attnums.includes(0) || attnums.includes(c.attnum)).map((c) => c.name);
    if (checks.length > 0) rel.checks = named(checks);
    if (keys.length > 0) rel.keys = named(keys);
  }
  const columnName = (relid: number, attnum: number) => relations.get(relid)?.columns.find((c) => c.attnum === attnum)?.name;
  for (const fk of foreignKeys) {
    const column = columnName(fk.relid, fk.attnum);
    const referenced = columnName(fk.refRelid, fk.refAttnum);
    if (column !== undefined && referenced !== undefined) (relations.get(fk.relid)!.references ??= []).push({ column, relation: fk.refRelid, referenced });
  }
  return new SchemaSnapshot([...relations.values()], functions, unread, version, loadedAt, shadowed);
}

function need(v: string | null | undefined): string {
  if (v === null || v === undefined) throw new HoopError('HOOP_UPSTREAM', 'the catalog query returned NULL where a value belongs');
  return v;
}

function toInt(v: string | null | undefined): number {
  const n = Number(need(v));
  if (!Number.isSafeInteger(n)) throw new HoopError('HOOP_UPSTREAM', `the catalog query returned a malformed number ${String(v)}`);
  return n;
}
