/**
 * The shared-credential guard: every user of a connection reaches PostgreSQL through the
 * gateway's one service role (logged in with the caller's mapped role as the session's role), so
 * a statement that changes the session's role, alters or re-grants the service role or a mapped
 * role, or signals other backends would act for everyone who shares that credential. This module
 * decides, from PostgreSQL's own parse tree (libpg-query), whether a statement text is one of
 * those; it is pure (no I/O) and always on, exempt from nothing, ahead of every other decision.
 *
 * Refused (SQLSTATE 42501):
 * - `SET [SESSION|LOCAL] ROLE …` (any value, NONE included), `SET SESSION AUTHORIZATION …`, and a
 *   SET clause of `role` / `session_authorization` anywhere (CREATE/ALTER FUNCTION … SET role,
 *   ALTER ROLE|DATABASE … SET, ALTER SYSTEM SET). `RESET ROLE`, `SET ROLE DEFAULT`, `RESET
 *   SESSION AUTHORIZATION`, `SET SESSION AUTHORIZATION DEFAULT`, `RESET ALL` and `DISCARD ALL` pass:
 *   a role given at startup is the session's reset value, so they keep the mapped role.
 * - `set_config()` whose first argument is `'role'` or `'session_authorization'` (any case), or is
 *   not a constant, in any expression of any statement.
 * - `pg_terminate_backend`, `pg_cancel_backend`, `pg_signal_backend`: any call, any schema.
 * - A query given as text to a function that runs it (`query_to_xml`, `ts_stat`, `crosstab`, …):
 *   guarded like a statement when it is a constant, refused when it is not.
 * - `ALTER ROLE|USER|GROUP` (also `… SET|RESET`, `… RENAME`, `ALL`), `DROP ROLE`, `GRANT|REVOKE`
 *   of role membership, `CREATE ROLE … IN ROLE|ROLE|ADMIN`, `DROP OWNED` / `REASSIGN OWNED` naming
 *   a protected role or CURRENT_USER / SESSION_USER / CURRENT_ROLE (all of them are the shared
 *   roles here); object privileges GRANTed to the service role (it must hold none of its own).
 * - `DO` blocks in a language other than PL/pgSQL, with dynamic SQL (EXECUTE, OPEN … FOR EXECUTE,
 *   FOR … IN EXECUTE, RETURN QUERY EXECUTE), with any embedded statement or expression the
 *   guard refuses (checked recursively), or whose body does not compile.
 * - `CREATE AGGREGATE`, `CREATE OPERATOR` or `CREATE CAST` with `set_config` or a signal function
 *   as its support function (each use calls it with arguments the guard never sees).
 * - `CREATE [OR REPLACE] FUNCTION|PROCEDURE` whose body would be refused as a DO block's is (a
 *   PL/pgSQL body), or whose SQL body holds a statement the guard refuses; in any other language.
 *   Its body runs later, for whoever calls it.
 * A text that does not parse is refused with the parser's message (SQLSTATE 42601).
 *
 * What the guard cannot see, and what holds instead: code that already exists in the database
 * (created outside hoop).
 * A function or procedure (created earlier, by anyone) can run `SET ROLE`, `set_config` or
 * dynamic SQL inside; the guard sees only its call. There, the mapped role's own privileges are
 * the boundary: the mapped roles must not be able to create functions (no CREATE on any schema,
 * no TEMPORARY on the database), the service role holds nothing but its memberships (NOINHERIT),
 * and PostgreSQL itself refuses to signal or show the backends of a role the caller does not
 * have the privileges of (docs/roles.md).
 *
 * Speed: a cheap prefilter lets texts that cannot contain any refused construct skip the parser
 * (pgbench's distinct `SELECT … WHERE aid = 123` texts never parse), and verdicts of texts that
 * do parse are kept in a small LRU per text and protected roles.
 */
import { doBlockCode, dynamicSql, functionCode, nonStringConstant, queryTextArguments, stringConstant } from './code-body.js';
import { doText, parsePlpgsql, parseSql, statementTexts } from './masking/parse.js';

export const SQLSTATE_INSUFFICIENT_PRIVILEGE = '42501';
export const SQLSTATE_SYNTAX_ERROR = '42601';

export interface GuardVerdict {
  /** What the client is told when the statement is refused; null: it may run. */
  refusal: string | null;
  /** The SQLSTATE of a refusal: 42501, or 42601 when the text does not parse. */
  code?: string;
}

const ALLOWED: GuardVerdict = Object.freeze({ refusal: null });

/** Words (case-insensitive) without which no refused construct can be written. `do` is a whole
 *  word; `u&` catches Unicode-escaped identifiers and strings (U&"pg_termin\0061te_backend");
 *  the functions that run a query given as text may be given one in any spelling. */
/** Texts that match none of these cannot hold anything the guard refuses (the parse is skipped). */
export const MAY_NEED_PARSE = /role|session|authorization|alter|grant|revoke|drop|create|backend|set_config|reassign|owned|u&|\bdo\b|query_to|ts_stat|ts_rewrite|crosstab/i;

/** Whether `text` could contain a construct the guard refuses (false: it certainly cannot). */
export function mayNeedGuard(text: string): boolean {
  return MAY_NEED_PARSE.test(text);
}

const CACHE_SIZE = 512;
/** Longer texts are decided every time rather than pinned in memory. */
const CACHE_MAX_TEXT = 16 * 1024;
const verdicts = new Map<string, GuardVerdict>();

/** The guard's decision for one statement text (a simple Query may hold several statements). */
export function guardQuery(text: string, protectedRoles: string[]): { refusal: string | null; code?: string } {
  if (!mayNeedGuard(text)) return ALLOWED;
  const cacheable = text.length <= CACHE_MAX_TEXT;
  const key = cacheable ? `${protectedRoles.join(',')}\u0000${text}` : '';
  if (cacheable) {
    const hit = verdicts.get(key);
    if (hit) {
      verdicts.delete(key); // re-insert: most recently used last
      verdicts.set(key, hit);
      return hit;
    }
  }
  const verdict = decide(text, new Set(protectedRoles.map((r) => r.toLowerCase())));
  if (cacheable) {
    verdicts.set(key, verdict);
    if (verdicts.size > CACHE_SIZE) verdicts.delete(verdicts.keys().next().value!);
  }
  return verdict;
}

function decide(text: string, protectedRoles: Set<string>): GuardVerdict {
  let stmts: unknown[];
  let sources: string[];
  try {
    const parsed = parseSql(text).stmts ?? [];
    stmts = parsed.map((s) => s.stmt);
    sources = statementTexts(text, parsed);
  } catch (err) {
    return { refusal: `hoop: statement refused: it does not parse, so hoop cannot tell whether it would change the database role every user of this connection shares (${messageOf(err)})`, code: SQLSTATE_SYNTAX_ERROR };
  }
  const why = new Walker(protectedRoles).statements(stmts, sources);
  return why === null ? ALLOWED : { refusal: `hoop: statement refused: ${why}`, code: SQLSTATE_INSUFFICIENT_PRIVILEGE };
}

// ---------------------------------------------------------------------------------------------

type Node = Record<string, unknown>;
const SHARED = 'every user of this connection shares';
const CHANGES_ROLE = `it would change the database role ${SHARED}`;
const SERVICE_ROLE_HOLDS_NOTHING = `the service role is the login ${SHARED}, and it must hold no privileges of its own`;
const ROLE_SETTINGS = new Set(['role', 'session_authorization']);
const SIGNAL_FUNCTIONS = new Set(['pg_terminate_backend', 'pg_cancel_backend', 'pg_signal_backend']);

/** RoleSpec types that name the session's own (shared) roles. */
const SESSION_ROLE_SPECS = new Set(['ROLESPEC_CURRENT_USER', 'ROLESPEC_SESSION_USER', 'ROLESPEC_CURRENT_ROLE']);
/** A DO body nested in a DO body nested in …: past this depth, refuse rather than recurse. */
const MAX_DEPTH = 8;

function isNode(v: unknown): v is Node {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Walks parse trees; each check returns why the statement is refused, or null. */
class Walker {
  /** The setting a `SELECT set_config(name, …) FROM pg_settings WHERE name = '…'` row names (innermost first). */
  private readonly settingRows: string[] = [];

  /** The text of the statement being walked (a CREATE FUNCTION's body compiles from it). */
  private source = '';

  /** `code`: what the walked statements are part of, for messages (`a DO block`, `a function body`). */
  constructor(private readonly protectedRoles: Set<string>, private readonly depth = 0, private readonly code = 'a DO block') {}

  statements(stmts: unknown[], sources: string[] = []): string | null {
    for (const [i, stmt] of stmts.entries()) {
      this.source = sources[i] ?? '';
      const why = this.topLevel(stmt) ?? this.walk(stmt, true);
      if (why !== null) return why;
    }
    return null;
  }

  /** A top-level SET may reset the role (it keeps the startup role); nested SET clauses may not. */
  private topLevel(stmt: unknown): string | null {
    const set = isNode(stmt) ? stmt['VariableSetStmt'] : undefined;
    if (!isNode(set) || !ROLE_SETTINGS.has(String(set['name'] ?? '').toLowerCase())) return null;
    const kind = set['kind'];
    if (kind === 'VAR_RESET' || kind === 'VAR_SET_DEFAULT') return null;
    return String(set['name']).toLowerCase() === 'role' ? `SET ROLE: ${CHANGES_ROLE}` : `SET SESSION AUTHORIZATION: ${CHANGES_ROLE}`;
  }

  /** Every node of the tree; `top`: the statement itself (its own VariableSetStmt was checked). */
  private walk(value: unknown, top = false): string | null {
    if (Array.isArray(value)) {
      for (const v of value) {
        const why = this.walk(v);
        if (why !== null) return why;
      }
      return null;
    }
    if (!isNode(value)) return null;
    for (const [type, body] of Object.entries(value)) {
      if (isNode(body)) {
        const why = this.node(type, body, top);
        if (why !== null) return why;
      }
      const row = type === 'SelectStmt' && isNode(body) ? pgSettingsRow(body) : null;
      if (row !== null) this.settingRows.push(row);
      const why = this.walk(body);
      if (row !== null) this.settingRows.pop();
      if (why !== null) return why;
    }
    return null;
  }

  private node(type: string, n: Node, top: boolean): string | null {
    switch (type) {
      case 'VariableSetStmt':
        if (top) return null;
        return ROLE_SETTINGS.has(String(n['name'] ?? '').toLowerCase()) ? `a setting of ${String(n['name']).toLowerCase()}: ${CHANGES_ROLE}` : null;
      case 'FuncCall':
        return this.funcCall(n);
      case 'AlterRoleStmt':
      case 'AlterRoleSetStmt':
        return this.alterRole(n);
      case 'AlterDatabaseSetStmt':
      case 'AlterSystemStmt':
        return settingOfRole(n['setstmt']) ? `${type === 'AlterSystemStmt' ? 'ALTER SYSTEM' : 'ALTER DATABASE'} … SET ${String((n['setstmt'] as Node)['name']).toLowerCase()}: ${CHANGES_ROLE}` : null;
      case 'RenameStmt':
        return n['renameType'] === 'OBJECT_ROLE' && this.isProtectedName(n['subname']) ? `ALTER ROLE … RENAME of ${String(n['subname'])}: it would change a database role ${SHARED}` : null;
      case 'DropRoleStmt':
        return this.namesProtected(n['roles']) ? `DROP ROLE: it would drop a database role ${SHARED}` : null;
      case 'GrantRoleStmt':
        return this.grantRole(n);
      case 'CreateRoleStmt':
        return this.namesProtected(n['options']) ? `CREATE ROLE … IN ROLE / ROLE / ADMIN: it would change the membership of a database role ${SHARED}` : null;
      case 'DropOwnedStmt':
      case 'ReassignOwnedStmt':
        return this.namesProtected(n) ? `${type === 'DropOwnedStmt' ? 'DROP OWNED' : 'REASSIGN OWNED'}: it would change what a database role ${SHARED} owns and may do` : null;
      case 'GrantStmt':
        return this.grantsToService(n['grantees']) ? `GRANT to the service role: ${SERVICE_ROLE_HOLDS_NOTHING}` : null;
      case 'AlterDefaultPrivilegesStmt': {
        const action = n['action'];
        return isNode(action) && this.grantsToService(action['grantees']) ? `GRANT to the service role: ${SERVICE_ROLE_HOLDS_NOTHING}` : null;
      }
      case 'DoStmt':
        return this.doBlock(n);
      case 'CreateFunctionStmt':
        return this.functionBody(n);
      case 'DefineStmt':
        return n['kind'] === 'OBJECT_AGGREGATE' || n['kind'] === 'OBJECT_OPERATOR'
          ? callsGuarded(n['definition'], n['kind'] === 'OBJECT_AGGREGATE' ? 'an aggregate' : 'an operator')
          : null;
      case 'CreateCastStmt':
        return isNode(n['func']) ? callsGuarded([n['func']], 'a cast') : null;
      default:
        return null;
    }
  }

  private funcCall(n: Node): string | null {
    const names = Array.isArray(n['funcname']) ? n['funcname'] : [];
    const last = names[names.length - 1];
    const name = isNode(last) && isNode(last['String']) ? String(last['String']['sval'] ?? '').toLowerCase() : '';
    if (SIGNAL_FUNCTIONS.has(name)) return `${name}: it would signal another session of the database role ${SHARED}`;
    const args = Array.isArray(n['args']) ? n['args'] : [];
    const queries = queryTextArguments(name, args.length);
    if (queries) return this.queryTexts(name, args, queries);
    if (name !== 'set_config') return null;
    const setting = stringConstant(args[0]) ?? (isColumn(args[0], 'name') ? (this.settingRows[this.settingRows.length - 1] ?? null) : null);
    if (setting === null) return `set_config with a setting name that is not a constant: it could change the database role ${SHARED}`;
    return ROLE_SETTINGS.has(setting.toLowerCase()) ? `set_config('${setting.toLowerCase()}', …): ${CHANGES_ROLE}` : null;
  }

  /**
   * A builtin (or tablefunc's crosstab) that runs a query given as text:
   * `query_to_xml('SELECT set_config(''role'', ''hoop_svc'', false)', …)` switched the session's
   * role. A constant query is guarded like the statement it is; any other is refused.
   */
  private queryTexts(name: string, args: unknown[], positions: number[]): string | null {
    for (const i of positions) {
      const arg = args[i];
      if (arg === undefined || nonStringConstant(arg)) continue; // crosstab(text, int): not a query
      const text = stringConstant(arg);
      if (text === null) return `${name} with a query that is not a constant: hoop cannot see what it runs, and it could change the database role ${SHARED}`;
      if (this.depth >= MAX_DEPTH) return `queries given as text nested deeper than ${MAX_DEPTH}`;
      let parsed: ReturnType<typeof parseSql>['stmts'];
      try {
        parsed = parseSql(text).stmts ?? [];
      } catch (err) {
        return `${name} with a query that does not parse (${messageOf(err)}), so hoop cannot tell whether it would change the database role ${SHARED}`;
      }
      const why = new Walker(this.protectedRoles, this.depth + 1, this.code).statements(parsed.map((p) => p.stmt), statementTexts(text, parsed));
      if (why !== null) return `${name} running ${why}`;
    }
    return null;
  }

  /** ALTER ROLE of a protected role, of the session's own, or of ALL roles (no role named). */
  private alterRole(n: Node): string | null {
    const set = n['setstmt'];
    if (settingOfRole(set)) return `ALTER ROLE … SET ${String(set['name']).toLowerCase()}: ${CHANGES_ROLE}`;
    const role = n['role'];
    if (!isNode(role)) return `ALTER ROLE ALL: it would change every database role, including the ones ${SHARED}`;
    return this.namesProtected(role) || this.namesProtected(n['options']) ? `ALTER ROLE: it would change a database role ${SHARED}` : null;
  }

  private grantRole(n: Node): string | null {
    const granted = Array.isArray(n['granted_roles']) ? n['granted_roles'] : [];
    const grantsProtected = granted.some((g) => isNode(g) && isNode(g['AccessPriv']) && this.isProtectedName(g['AccessPriv']['priv_name']));
    if (!grantsProtected && !this.namesProtected(n['grantee_roles']) && !this.namesProtected(n['grantor'])) return null;
    return `${n['is_grant'] === true ? 'GRANT' : 'REVOKE'} of role membership: it would change the membership of a database role ${SHARED}`;
  }

  /** Whether any RoleSpec under `value` is a protected role or the session's own. */
  private namesProtected(value: unknown): boolean {
    if (Array.isArray(value)) return value.some((v) => this.namesProtected(v));
    if (!isNode(value)) return false;
    if (typeof value['roletype'] === 'string') return this.isProtectedSpec(value);
    return Object.values(value).some((v) => this.namesProtected(v));
  }

  private isProtectedSpec(spec: Node): boolean {
    return SESSION_ROLE_SPECS.has(String(spec['roletype'])) || (spec['roletype'] === 'ROLESPEC_CSTRING' && this.isProtectedName(spec['rolename']));
  }

  private isProtectedName(name: unknown): boolean {
    return typeof name === 'string' && this.protectedRoles.has(name.toLowerCase());
  }

  /** Object privileges granted to the service role (the first protected role) or the session's own roles. */
  private grantsToService(grantees: unknown): boolean {
    const service = this.protectedRoles.values().next().value;
    if (!Array.isArray(grantees) || service === undefined) return false;
    return grantees.some((g) => {
      const spec = isNode(g) ? g['RoleSpec'] : undefined;
      return isNode(spec) && spec['roletype'] === 'ROLESPEC_CSTRING' && String(spec['rolename']).toLowerCase() === service;
    });
  }

  private doBlock(n: Node): string | null {
    const { language, code: body } = doBlockCode(n);
    if (language !== 'plpgsql') return `a DO block in ${language}: hoop cannot see what it runs, and it could change the database role ${SHARED}`;
    if (body === null) return `a DO block without a body`;
    if (this.depth >= MAX_DEPTH) return `DO blocks nested deeper than ${MAX_DEPTH}`;
    let tree: unknown;
    try {
      tree = parsePlpgsql(doText(body));
    } catch (err) {
      return `a DO block that does not compile (${messageOf(err)}), so hoop cannot tell whether it would change the database role ${SHARED}`;
    }
    return new Walker(this.protectedRoles, this.depth + 1).plpgsql(tree);
  }

  /**
   * CREATE FUNCTION / PROCEDURE: its body runs later, when anyone calls it, out of the guard's
   * sight, so it is checked now as a DO block is: `CREATE FUNCTION f() … AS 'ALTER ROLE hoop_svc
   * PASSWORD …'` (or an EXECUTE of that) then `SELECT f()` would hand the shared login to whoever
   * wrote it. SQL bodies are guarded statement by statement, PL/pgSQL ones compiled (dynamic SQL
   * refused); other languages are refused. (A BEGIN ATOMIC body is in the parse tree: the walk
   * covers it.)
   */
  private functionBody(n: Node): string | null {
    const { language, code: body, objectCode } = functionCode(n);
    if (objectCode) return `a function in object code (LANGUAGE ${language ?? 'c'}): hoop cannot see what it runs, and it could change the database role ${SHARED}`;
    if (body === null) return null; // BEGIN ATOMIC / RETURN: walked as part of the tree
    if (this.depth >= MAX_DEPTH) return `function bodies nested deeper than ${MAX_DEPTH}`;
    const inner = new Walker(this.protectedRoles, this.depth + 1, 'a function body');
    if (language === 'sql') {
      let parsed: ReturnType<typeof parseSql>['stmts'];
      try {
        parsed = parseSql(body).stmts ?? [];
      } catch (err) {
        return `a function body that does not parse (${messageOf(err)}), so hoop cannot tell whether it would change the database role ${SHARED}`;
      }
      const why = inner.statements(parsed.map((p) => p.stmt), statementTexts(body, parsed));
      return why === null ? null : `a function body with ${why}`;
    }
    if (language !== 'plpgsql') return `a function in ${language ?? 'an unnamed language'}: hoop cannot see what it runs, and it could change the database role ${SHARED}`;
    let tree: unknown;
    try {
      tree = parsePlpgsql(this.source);
    } catch (err) {
      return `a function body that does not compile (${messageOf(err)}), so hoop cannot tell whether it would change the database role ${SHARED}`;
    }
    return inner.plpgsql(tree);
  }

  /** A compiled PL/pgSQL body: dynamic SQL is refused, every embedded statement and expression guarded. */
  plpgsql(value: unknown): string | null {
    if (Array.isArray(value)) {
      for (const v of value) {
        const why = this.plpgsql(v);
        if (why !== null) return why;
      }
      return null;
    }
    if (!isNode(value)) return null;
    for (const [type, body] of Object.entries(value)) {
      const dynamic = dynamicSql(type, body);
      if (dynamic) return `${this.code} with dynamic SQL (${dynamic}): hoop cannot see what it runs, and it could change the database role ${SHARED}`;
      if (type === 'PLpgSQL_expr' && isNode(body)) {
        const why = this.embedded(String(body['query'] ?? ''), Number(body['parseMode'] ?? 0));
        if (why !== null) return why;
        continue;
      }
      const why = this.plpgsql(body);
      if (why !== null) return why;
    }
    return null;
  }

  /** One SQL statement (parse mode 0) or expression (the others) of a PL/pgSQL body. */
  private embedded(query: string, parseMode: number): string | null {
    if (!mayNeedGuard(query)) return null;
    const inside = (why: string) => `${this.code} with ${why}`;
    const texts = parseMode === 0 ? [query] : [`SELECT ${query}`, `SELECT ${query.replace(/^[^:=]*:?=/, '')}`];
    for (const text of texts) {
      let stmts: unknown[];
      try {
        stmts = (parseSql(text).stmts ?? []).map((s) => s.stmt);
      } catch {
        continue;
      }
      const why = this.statements(stmts);
      return why === null ? null : inside(why);
    }
    return inside(`a part hoop cannot read (${query.slice(0, 60)}), so it cannot tell whether it would change the database role ${SHARED}`);
  }
}

/** An inline VariableSetStmt (ALTER … SET) of `role` or `session_authorization`, in any form. */
function settingOfRole(set: unknown): set is Node {
  return isNode(set) && ROLE_SETTINGS.has(String(set['name'] ?? '').toLowerCase());
}

/**
 * `SELECT set_config(name, …) FROM pg_settings WHERE name = 'x'`: the one row pg_dump (15.8 and
 * later) sets restrict_nonsystem_relation_kind with. Its setting name is a column, but the WHERE
 * pins it to one constant: the name that row can carry, or null for any other shape.
 */
function pgSettingsRow(select: Node): string | null {
  const from = Array.isArray(select['fromClause']) ? select['fromClause'] : [];
  const rel = from.length === 1 && isNode(from[0]) ? from[0]['RangeVar'] : undefined;
  if (!isNode(rel) || rel['relname'] !== 'pg_settings' || (rel['schemaname'] !== undefined && rel['schemaname'] !== 'pg_catalog')) return null;
  const where = select['whereClause'];
  const eq = isNode(where) ? where['A_Expr'] : undefined;
  if (!isNode(eq) || eq['kind'] !== 'AEXPR_OP' || !Array.isArray(eq['name']) || eq['name'].length !== 1) return null;
  const op = eq['name'][0];
  if (!isNode(op) || !isNode(op['String']) || op['String']['sval'] !== '=') return null;
  if (isColumn(eq['lexpr'], 'name')) return stringConstant(eq['rexpr']);
  if (isColumn(eq['rexpr'], 'name')) return stringConstant(eq['lexpr']);
  return null;
}

/** A reference to column `column` (bare, or qualified by pg_settings). */
function isColumn(arg: unknown, column: string): boolean {
  const ref = isNode(arg) ? arg['ColumnRef'] : undefined;
  const fields = isNode(ref) && Array.isArray(ref['fields']) ? ref['fields'] : [];
  const names = fields.map((f) => (isNode(f) && isNode(f['String']) ? String(f['String']['sval']) : null));
  return (names.length === 1 && names[0] === column) || (names.length === 2 && names[0] === 'pg_settings' && names[1] === column);
}


/**
 * An aggregate, operator or cast whose support function is one the guard refuses to see called:
 * `CREATE AGGREGATE a(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'role')` made
 * `SELECT a('hoop_svc', false)` a `set_config('role', …)` under another name. (CREATE AGGREGATE
 * and CREATE OPERATOR name it as a type name in their definition, CREATE CAST as `func`.)
 */
function callsGuarded(definition: unknown, what: string): string | null {
  for (const item of Array.isArray(definition) ? definition : []) {
    const d = isNode(item) ? (isNode(item['DefElem']) ? item['DefElem']['arg'] : item) : undefined;
    const ref = isNode(d) ? (isNode(d['TypeName']) ? d['TypeName']['names'] : d['objname']) : undefined;
    const names = Array.isArray(ref) ? ref : [];
    const last = names[names.length - 1];
    const name = isNode(last) && isNode(last['String']) ? String(last['String']['sval'] ?? '').toLowerCase() : '';
    if (name === 'set_config' || SIGNAL_FUNCTIONS.has(name)) {
      const could = name === 'set_config' ? `change the database role ${SHARED}` : `signal another session of the database role ${SHARED}`;
      return `${what} that calls ${name}: each use would run it with arguments hoop never sees, and it could ${could}`;
    }
  }
  return null;
}
