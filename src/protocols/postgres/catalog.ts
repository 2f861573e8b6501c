/**
 * The session's prepared statements and portals as the SERVER holds them (names.ts predicts
 * them ahead of the server's answers), and the rules for when the engine can no longer name what
 * a name holds.
 *
 * SQL shares these namespaces with the protocol: `PREPARE`/`DEALLOCATE`/`DISCARD` change named
 * statements, `DECLARE`/`CLOSE` change named portals (cursors), and a `DO` block or `CALL` can
 * run any of them as dynamic SQL. After such a command completes, every named statement or
 * portal it could have touched is marked unknown: the record of a later Execute says so instead
 * of naming SQL the server may not run. The unnamed statement and portal are out of SQL's reach.
 */
import type { FinalPlan } from '../engine.js';
import type { FieldDescription } from './messages.js';
import type { Risks } from './text.js';
import { NameTable, valueOf, type Version } from './names.js';

export interface PreparedStatement {
  sql: string;
  paramTypes: number[];
  fields: FieldDescription[] | null;
  /** ASCII lower-case view of the whole text (COPY options), and what it may do when run. */
  lower?: string;
  risks?: Risks;
  /** Length and SHA-256 of the whole text, and whether `sql` was cut at the text limit. */
  bytes?: number;
  sha256?: string;
  truncated?: boolean;
  /** The engine cannot name what this statement holds (see unknownText). */
  unknown?: boolean;
  /** The `run` decision computed for it once, reused by its Executes until the catalog changes. */
  plan?: FinalPlan;
}

export interface Portal {
  statementName: string;
  /** The statement version the Bind named: resolved when needed, as the server may undo it. */
  statementVersion: Version<PreparedStatement> | null;
  parameters: unknown[];
  resultFormats: number[];
  fields: FieldDescription[] | null;
  /** SQL may have replaced the portal since its Bind. */
  unknown?: boolean;
  /** Rows its Executes returned so far, when one ended suspended (`Execute` with a row limit):
   *  the next goes on from there, and so does the row cap's count (one result, several Executes). */
  rowsReturned?: number;
}

/** Command tags after which SQL may have changed named statements / named portals. */
const TOUCHES_STATEMENTS = /^(PREPARE|DEALLOCATE|DISCARD|DO|CALL)\b/;
const TOUCHES_PORTALS = /^(DECLARE CURSOR|CLOSE CURSOR|DISCARD|DO|CALL)\b/;
/** Command tags that cannot change the catalog a cached plan was made against. */
const KEEPS_PLANS = /^(SELECT|INSERT|UPDATE|DELETE|MERGE|COPY|FETCH|MOVE|BEGIN|START TRANSACTION|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|SHOW|RESET|LISTEN|NOTIFY|UNLISTEN|PREPARE|EXECUTE|DEALLOCATE|DECLARE CURSOR|CLOSE CURSOR|EXPLAIN|VALUES)\b/;

export function unknownText(kind: 'statement' | 'portal', name: string): string {
  return `-- ${kind === 'statement' ? 'prepared statement' : 'portal'} ${JSON.stringify(name)}: unknown (SQL in this session may have replaced it: PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD, DO or CALL ran since it was defined)`;
}

export class Catalog {
  readonly statements = new NameTable<PreparedStatement>();
  readonly portals = new NameTable<Portal>();
  /** SQL has defined or dropped named statements: a name the protocol never defined may exist. */
  private sqlDefinedStatements = false;

  /** A command completed: mark what it may have changed, and drop plans it may have outdated. */
  commandCompleted(tag: string): void {
    if (TOUCHES_STATEMENTS.test(tag)) {
      this.sqlDefinedStatements = true;
      this.statements.replaceAll((name, old) => ({ ...old, sql: unknownText('statement', name), unknown: true, plan: undefined }), (name) => name !== '');
    }
    if (TOUCHES_PORTALS.test(tag)) {
      this.portals.replaceAll((_name, old) => ({ ...old, unknown: true }), (name) => name !== '');
    }
    if (!KEEPS_PLANS.test(tag)) for (const s of this.statements.values()) s.plan = undefined;
  }

  /** The statement a portal runs, as far as the engine knows it. */
  statementOf(portal: Portal): PreparedStatement | undefined {
    return valueOf(portal.statementVersion);
  }

  /** The SQL a portal runs, and whether the engine can name it. */
  textOf(name: string, portal: Portal): { sql: string; unknown: boolean } {
    if (portal.unknown) return { sql: unknownText('portal', name), unknown: true };
    const statement = this.statementOf(portal);
    if (!statement) {
      // Unknown to the protocol: it fails upstream, unless SQL defined the name.
      return this.sqlDefinedStatements && portal.statementName !== '' ? { sql: unknownText('statement', portal.statementName), unknown: true } : { sql: '', unknown: false };
    }
    return { sql: statement.sql, unknown: statement.unknown === true };
  }
}
