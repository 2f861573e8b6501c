/**
 * One error base for every hoop failure, each with a stable `HOOP_*` code.
 *
 * The code is what the rest of the system maps: `src/cli/exit-codes.ts` maps codes to process exit
 * codes, `src/protocols/postgres/sqlstate.ts` maps them to SQLSTATEs in ErrorResponses, and the
 * HTTP API maps them to status codes. Nothing else inspects messages.
 */
export type HoopErrorCode =
  | 'HOOP_USAGE' // bad command line or request shape
  | 'HOOP_CONFIG_INVALID' // gateway config refused at start
  | 'HOOP_NOT_LOGGED_IN' // no credentials for this gateway
  | 'HOOP_AUTH_REJECTED' // token or key presented and refused
  | 'HOOP_FORBIDDEN' // authenticated, but not allowed (access groups, roles)
  | 'HOOP_NOT_FOUND' // unknown connection, session, ...
  | 'HOOP_POLICY_DENIED' // a policy rule said deny
  | 'HOOP_APPROVAL_DENIED' // a reviewer denied, or the approval expired
  | 'HOOP_APPROVAL_PENDING' // still waiting for a reviewer
  | 'HOOP_AUDIT_UNAVAILABLE' // write-ahead record could not be made durable: fail closed
  | 'HOOP_AUDIT_VERIFY_FAILED' // hash chain or signature check failed
  | 'HOOP_PROTOCOL' // malformed or oversized protocol bytes from a client
  | 'HOOP_UPSTREAM' // the database could not be reached or refused the gateway
  | 'HOOP_NETWORK' // the gateway or identity provider could not be reached
  | 'HOOP_STORE' // the store failed
  | 'HOOP_INTERNAL';

export class HoopError extends Error {
  readonly code: HoopErrorCode;
  /** One short sentence telling the user what to do next, printed after the message. */
  readonly hint: string | undefined;

  constructor(code: HoopErrorCode, message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options?.hint;
  }
}

export class UsageError extends HoopError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super('HOOP_USAGE', message, options);
  }
}

export class ConfigError extends HoopError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super('HOOP_CONFIG_INVALID', message, options);
  }
}

/** Authentication and authorization failures. `reason` is safe to show and to record. */
export class AuthError extends HoopError {}

export class ProtocolError extends HoopError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super('HOOP_PROTOCOL', message, options);
  }
}

export class AuditUnavailableError extends HoopError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super('HOOP_AUDIT_UNAVAILABLE', message, options);
  }
}

export class StoreError extends HoopError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super('HOOP_STORE', message, options);
  }
}

export function isHoopError(err: unknown): err is HoopError {
  return err instanceof HoopError;
}

/** A message for any thrown value, without stack traces or secrets. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
