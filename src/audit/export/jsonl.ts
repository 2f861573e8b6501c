/**
 * `jsonl`: one event per line, exactly as stored (with `prev_hash`, `hash` and `payload_sha256`)
 * and its payload inline (`payload`: null once pruned), in canonical JSON so a line is
 * byte-stable and any tool can recompute its hash (docs/audit-log.md "The chain").
 */
import { canonicalJson } from '../chain.js';
import type { AuditEvent, EventPayload } from '../event.js';

export function jsonlLine(e: AuditEvent, payload: EventPayload | null | undefined): string {
  const { payload: _stored, ...rest } = e;
  return `${canonicalJson(e.payload_sha256 === undefined ? rest : { ...rest, payload: payload ?? null })}\n`;
}
