/**
 * The one place that maps hoop error codes to PostgreSQL SQLSTATEs (Appendix A, "PostgreSQL
 * Error Codes"), so that psql and drivers see a standard class for each kind of refusal.
 */
import type { HoopErrorCode } from '../../errors.js';

const SQLSTATE_BY_CODE: Record<HoopErrorCode, string> = {
  HOOP_USAGE: '08P01', // protocol_violation: the request itself was malformed
  HOOP_CONFIG_INVALID: '58000', // system_error
  HOOP_NOT_LOGGED_IN: '28000', // invalid_authorization_specification
  HOOP_AUTH_REJECTED: '28000',
  HOOP_FORBIDDEN: '42501', // insufficient_privilege
  HOOP_NOT_FOUND: '3D000', // invalid_catalog_name: the connection does not exist
  HOOP_POLICY_DENIED: '42501',
  HOOP_APPROVAL_DENIED: '42501',
  HOOP_APPROVAL_PENDING: '55000', // object_not_in_prerequisite_state
  HOOP_AUDIT_UNAVAILABLE: '58000', // system_error: fail closed, nothing ran
  HOOP_AUDIT_VERIFY_FAILED: 'XX000',
  HOOP_PROTOCOL: '08P01', // protocol_violation
  HOOP_UPSTREAM: '08006', // connection_failure
  HOOP_NETWORK: '08006',
  HOOP_STORE: '58000',
  HOOP_INTERNAL: 'XX000', // internal_error
};

export function sqlstateOf(code: HoopErrorCode): string {
  return SQLSTATE_BY_CODE[code] ?? 'XX000';
}

/** SQLSTATE for a wrong password (invalid_password), used by the local listener. */
export const SQLSTATE_INVALID_PASSWORD = '28P01';
/** query_canceled: a statement ended by a CancelRequest or statement_timeout. */
export const SQLSTATE_QUERY_CANCELED = '57014';
