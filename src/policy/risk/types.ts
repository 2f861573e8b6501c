/**
 * The vocabulary of access rules and approvals (issue 8), shared by the pure classifier and rule
 * evaluation in this folder and by the gateway that holds statements for approval. Nothing here
 * imports the gateway, the engine or the store.
 */

export type RiskAction = 'allow' | 'deny' | 'require_approval';

export const STATEMENT_KINDS = ['select', 'insert', 'update', 'delete', 'merge', 'copy_in', 'copy_out', 'ddl', 'dcl', 'transaction', 'utility'] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/** When a rule applies; every condition given must hold. */
export interface RuleCondition {
  kind?: StatementKind[];
  /** Globs: `customers` matches that table in any schema, `bank.customers` one. */
  tables?: string[];
  where?: boolean;
  limit?: boolean;
  joins?: boolean;
  aggregates?: boolean;
  protected_columns?: boolean;
  estimated_rows?: { op: '>' | '>=' | '<' | '<='; value: number };
}

export interface RiskRule {
  name: string;
  /** The rule applies only to callers in one of these groups; null: to everyone. */
  groups: string[] | null;
  when: RuleCondition;
  action: RiskAction;
}

export interface NotifyTarget {
  webhook: string;
  format: 'json' | 'slack';
  /** The HMAC key that signs deliveries (a `${env:}`/`${file:}` secret); null: unsigned. */
  secret: string | null;
}

/** A connection's `approval` block, validated. */
export interface ApprovalConfig {
  /** Groups whose members may decide (admins may too). */
  approvers: string[];
  minApprovals: number;
  /** How long a held statement waits for a decision. */
  timeoutMs: number;
  /** The longest time-bound access a request may ask for. */
  grantMaxMs: number;
  notify: NotifyTarget[];
  /** First match wins. */
  rules: RiskRule[];
  /** Results longer than this are cut off; approval is needed for more. */
  rowCap: number | null;
}
