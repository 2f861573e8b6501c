/**
 * The one mapping from failures to process exit codes (ARCHITECTURE.md, "The CLI").
 * Scripts branch on these numbers, so they are part of the product contract: add codes, never
 * renumber. Every `HoopErrorCode` must appear below, so a new code forces a decision here.
 */
import { isHoopError, type HoopErrorCode } from '../errors.js';

export const ExitCode = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  /** Not logged in, or the token/key was rejected. */
  AUTH: 4,
  /** Denied by policy or by access groups. */
  DENIED: 5,
  /** A reviewer denied the request, or the approval expired. */
  APPROVAL_DENIED: 6,
  /** The approval is still pending. */
  APPROVAL_PENDING: 8,
  /** `hoop audit verify` found a broken chain or signature. */
  AUDIT_VERIFY_FAILED: 10,
  /** Killed by a second Ctrl-C while shutting down (128 + SIGINT), as shells report it. */
  INTERRUPTED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

const BY_CODE: Record<HoopErrorCode, ExitCodeValue> = {
  HOOP_USAGE: ExitCode.USAGE,
  HOOP_CONFIG_INVALID: ExitCode.ERROR,
  HOOP_NOT_LOGGED_IN: ExitCode.AUTH,
  HOOP_AUTH_REJECTED: ExitCode.AUTH,
  HOOP_FORBIDDEN: ExitCode.DENIED,
  HOOP_NOT_FOUND: ExitCode.ERROR,
  HOOP_POLICY_DENIED: ExitCode.DENIED,
  HOOP_APPROVAL_DENIED: ExitCode.APPROVAL_DENIED,
  HOOP_APPROVAL_PENDING: ExitCode.APPROVAL_PENDING,
  HOOP_AUDIT_UNAVAILABLE: ExitCode.ERROR,
  HOOP_AUDIT_VERIFY_FAILED: ExitCode.AUDIT_VERIFY_FAILED,
  HOOP_PROTOCOL: ExitCode.ERROR,
  HOOP_UPSTREAM: ExitCode.ERROR,
  HOOP_NETWORK: ExitCode.ERROR,
  HOOP_STORE: ExitCode.ERROR,
  HOOP_INTERNAL: ExitCode.ERROR,
};

export function exitCodeFor(err: unknown): ExitCodeValue {
  if (isHoopError(err)) return BY_CODE[err.code] ?? ExitCode.ERROR;
  return ExitCode.ERROR;
}
