/**
 * The vocabulary of masking, shared by the pure decisions in this folder (rules, methods,
 * detectors, lineage, plan) and by the gateway that feeds them a schema and applies their plans.
 * Nothing here imports the gateway, the engine or the store.
 *
 * The rule throughout: a result column the gateway cannot show to be free of protected data is
 * masked, or its statement refused; it is never passed through.
 */

/** How a protected value is replaced. */
export type MaskMethod = 'redact' | 'partial' | 'hash' | 'null';

/** What a protected column holds (for the record, the detectors and the mask's shape). */
export const SEMANTIC_TYPES = ['ssn', 'card_number', 'account_number', 'iban', 'email', 'phone', 'date_of_birth', 'credit_score', 'address', 'name', 'other'] as const;
export type SemanticType = (typeof SEMANTIC_TYPES)[number];

/** Content detectors: the second net over text that leaves. */
export const DETECTORS = ['ssn', 'card_number', 'iban', 'email'] as const;
export type DetectorName = (typeof DETECTORS)[number];

/** One `masking.columns` entry as configured. */
export interface MaskRule {
  /** `schema.table.column`, each part a glob (`*` any run of characters, `?` one); matched case-sensitively
   *  against the catalog's names (PostgreSQL folds unquoted names to lower case). */
  column: string;
  type: SemanticType;
  method: MaskMethod;
  /** partial: how many trailing characters stay readable (default 4). */
  keep?: number;
}

export type PredicateAction = 'allow' | 'deny' | 'require_approval';

/** A connection's `masking` block, validated. */
export interface MaskingConfig {
  columns: MaskRule[];
  detectors: DetectorName[];
  /** Groups that see clear values (the waiver is recorded). */
  exempt: string[];
  /** What happens to a statement that uses a protected column in a predicate, join key, ORDER BY,
   *  GROUP BY or window. */
  predicates: PredicateAction;
  /** `schema.function` globs the operator vouches for: calls are allowed and their results are
   *  treated like builtin functions' (taint flows through arguments only). */
  trustedFunctions: string[];
}

/** A protected table column and the rule that protects it. */
export interface ProtectedSource {
  /** `schema.table.column` as the catalog names it. */
  column: string;
  rule: MaskRule;
}

/**
 * What may flow into one result column.
 * - `sources` empty and `unknown` null: proven clear.
 * - `direct`: the column IS one protected column's value, unchanged (through aliases, subqueries,
 *   CTEs, views): its rule's own method applies (partial and hash keep their meaning). Otherwise
 *   the value is derived (an expression over protected data) and gets a full mask.
 * - `unknown`: why the gateway cannot name what flows in (an EXECUTE of a statement it never saw,
 *   a relation missing from the catalog, ...): masked.
 */
export interface Taint {
  sources: ProtectedSource[];
  direct: boolean;
  unknown: string | null;
}

export interface OutputColumn {
  name: string;
  taint: Taint;
  /** The column's type where only the analysis can know it: COPY of a table (COPY data carries
   *  no types, and a mask must fit the type the data is restored into). */
  typeOid?: number;
}

/** Where a protected column was used to choose rows (reveals values one guess at a time). */
export interface PredicateUse {
  column: string;
  clause: 'where' | 'join' | 'having' | 'order_by' | 'group_by' | 'window' | 'distinct_on' | 'filter' | 'case' | 'returning_where' | 'limit' | 'rows' | 'error' | 'check' | 'distinct' | 'other';
}

/** The statement's effect on the session's SQL-level names, applied by the planner in order. */
export type NameEffect =
  | { kind: 'prepare'; name: string; result: OutputColumn[] | null }
  | { kind: 'deallocate'; name: string | null /* null: ALL */ }
  | { kind: 'declare'; name: string; result: OutputColumn[] | null }
  | { kind: 'close'; name: string | null /* null: ALL */ }
  | { kind: 'discard' };

/** COPY ... TO STDOUT options, as the parse tree gives them (defaults per the COPY reference). */
export interface CopyFormat {
  format: 'text' | 'csv' | 'binary';
  delimiter: string;
  null: string;
  quote: string;
  escape: string;
  header: boolean;
  /** The ENCODING option: what the rows are written in, instead of client_encoding. */
  encoding?: string;
}

/** One statement of a query string, analysed. */
export interface StatementAnalysis {
  /** The columns of the result it returns (a SELECT, VALUES, RETURNING, FETCH, EXECUTE, COPY TO
   *  STDOUT, SHOW, EXPLAIN), positionally; `null` when it returns rows the gateway cannot name
   *  (every column is then masked); `[]` when it returns no rows. */
  result: OutputColumn[] | null;
  /** Set for COPY ... TO STDOUT. */
  copy: CopyFormat | null;
  predicates: PredicateUse[];
  /** Why the statement must be refused on a masking connection (lineage the gateway cannot
   *  follow: a DO block, a user-defined function, a protected value written where it would lose
   *  its protection, catalog views that sample values, ...). Empty: it may run. */
  refusals: string[];
  /** It reads a protected column anywhere (its errors and notices may quote values). */
  touchesProtected: boolean;
  effects: NameEffect[];
}

export interface QueryAnalysis {
  /** One per statement, in the order the server runs them. */
  statements: StatementAnalysis[];
  /** The text did not parse: refuse (never pass). */
  parseError: string | null;
}

// ---------------------------------------------------------------------------------------------
// What the analysis needs to know of the database: the gateway builds it from the catalog.
// ---------------------------------------------------------------------------------------------

export type RelationKind = 'table' | 'view' | 'matview' | 'foreign' | 'partitioned' | 'other';

export interface RelationColumn {
  name: string;
  attnum: number;
  typeOid: number;
  /** Its type is a domain: the domain's checks run on every value written into it. */
  domain?: boolean;
}

export interface RelationInfo {
  oid: number;
  schema: string;
  name: string;
  kind: RelationKind;
  /** Live columns in attnum order (dropped ones left out). */
  columns: RelationColumn[];
  /** Views and materialized views: the defining query (`pg_get_viewdef`), a SELECT. */
  definition?: string;
  /** The tables it is a partition of or inherits from (pg_inherits), by oid. */
  parents?: number[];
  /** Its partitions and the tables that inherit from it (pg_inherits), by oid: reading it reads their rows too. */
  children?: number[];
  /** The columns its CHECK constraints read (every column for a whole-row reference): checked on
   *  every row written, an UPDATE's too whatever it assigns, so whether a write fails tells the
   *  values in them apart. */
  checks?: string[];
  /** The columns its keys read (UNIQUE, PRIMARY KEY, exclusion and FOREIGN KEY constraints, unique
   *  indexes; every column for an index expression or predicate): what is written there is
   *  compared with the values other rows (or the referenced table) hold. */
  keys?: string[];
  /** Its FOREIGN KEY columns, each with the relation (by oid) and column it references: what is
   *  written there is looked up among the referenced values. */
  references?: { column: string; relation: number; referenced: string }[];
}

export type FunctionKind = 'builtin' | 'user' | 'unknown';

export interface SchemaView {
  /** The relations a name can mean. Qualified: at most one. Unqualified: that name in every
   *  schema (the session's search_path is not tracked, so the analysis takes the union: fails closed). */
  relations(schema: string | null, name: string): RelationInfo[];
  relationByOid(oid: number): RelationInfo | undefined;
  /** builtin: defined in pg_catalog; user: defined in any other schema (an unqualified name that a
   *  user schema defines is `user`, whatever pg_catalog has); unknown: no such function. */
  functionKind(schema: string | null, name: string): FunctionKind;
  /** Whether a call may return a set (some overload the name can reach has proretset): its
   *  arguments then decide how many rows there are. */
  returnsSet(schema: string | null, name: string): boolean;
  /** The schemas other than pg_catalog that define a function of this name (an unqualified call
   *  may reach any of them). */
  userFunctionSchemas(name: string): string[];
  /** Whether a type of this name exists outside pg_catalog (an unqualified cast to it may reach
   *  that type, whose input function and checks run on the value). */
  typeShadowed(name: string): boolean;
}

/** The session's SQL-level prepared statements and cursors, as far as the planner followed them. */
export interface SessionNames {
  /** undefined: never seen (masked as unknown); null: seen, but its columns cannot be named. */
  prepared(name: string): OutputColumn[] | null | undefined;
  cursor(name: string): OutputColumn[] | null | undefined;
}

/** Which rule protects a catalog column (rules.ts compiles the configured globs into this). */
export type ProtectionLookup = (schema: string, table: string, column: string) => MaskRule | null;

/** Everything the analysis reads besides the statement text. */
export interface AnalysisEnv {
  schema: SchemaView;
  protection: ProtectionLookup;
  names: SessionNames;
  /** The operator vouches for this user-defined function (masking.trusted_functions). */
  trusted(schema: string, name: string): boolean;
}
