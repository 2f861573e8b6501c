/**
 * The audit bundle's manifest (format v1, docs/audit-export.md): one definition for the exporter
 * that writes it (export/bundle.ts) and the verifier that reads it (bundle-verify.ts).
 */
import { z } from 'zod';

export const BUNDLE_FORMAT = 'hoop-audit-bundle-v1';

export const HEX64 = /^[0-9a-f]{64}$/;
const hash64 = z.string().regex(HEX64, 'must be 64 lowercase hex digits');
const seqSchema = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const count = z.number().int().min(0);
const time = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 time');
export const manifestSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  created_at: time,
  created_by: z.object({ subject: z.string(), email: z.string().nullable() }),
  gateway_version: z.string(),
  range: z.object({ since: time, until: time }),
  filters: z.object({ user: z.string().nullable(), connection: z.string().nullable() }),
  span: z.object({ first_seq: seqSchema, last_seq: seqSchema, first_prev_hash: hash64 }),
  counts: z.object({ events_full: count, events_omitted: count, statements: count, payloads: count, payloads_pruned: count }),
  pruned_payloads: z.array(seqSchema),
  signing_key_id: hash64,
  key_ids: z.array(hash64),
});
export type Manifest = z.infer<typeof manifestSchema>;
