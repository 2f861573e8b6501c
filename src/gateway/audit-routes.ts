/**
 * `GET /api/v1/audit/export?format=jsonl|csv|cef|ocsf|bundle&since=T&until=T[&user=U][&connection=C]`
 * (`hoop audit export`): auditors and admins only; a refusal is recorded as access.denied.
 *
 * The body streams (chunked) as the log is read page by page, with backpressure from the
 * client, so an export of any size keeps the gateway's memory flat. Every export is one snapshot:
 * it reads up to the head as it began (for a bundle, up to the checkpoint it asks for first, so
 * the span ends at a signed head). A bundle is spooled to a private temporary directory first
 * (tar needs each entry's size), then streamed as .tar.gz; the directory is removed when the
 * response ends, fails or the client goes away. When the stream ends, `export.created` records
 * who, what, how many events and bytes and the SHA-256 of the body exactly as sent, or
 * `complete: false` and why when it was cut off.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlib, createGzip } from 'node:zlib';
import { bundleTar, spoolBundle, type BundleSigner, type SpooledBundle } from '../audit/export/bundle.js';
import { cefLine } from '../audit/export/cef.js';
import { CsvExport } from '../audit/export/csv.js';
import { jsonlLine } from '../audit/export/jsonl.js';
import { ocsfLine } from '../audit/export/ocsf.js';
import { readPages, withPayloads } from '../audit/export/source.js';
import { EXPORT_FORMATS, computeSpan, matchesFilters, rangeSeqs, type ExportFormat, type ExportQuery } from '../audit/export/span.js';
import type { AuditEvent } from '../audit/event.js';
import { HoopError, UsageError, errorMessage } from '../errors.js';
import { actorOf, type Identity } from '../identity/identity.js';
import { hoopVersion } from '../version.js';
import { DeniedError, requestSource } from './access.js';
import { mayReadAuditLog } from './authz.js';
import { HttpError } from './http.js';
import type { ApiContext } from './routes.js';
import { single, timestamp } from './routes.js';

/** What the export route needs beyond the API context: the checkpoint it forces, the key that signs bundles. */
export interface ExportParts {
  checkpointer: { checkpoint(): Promise<void> };
  signer: BundleSigner;
}

const EXPORT_QUERY = new Set(['format', 'since', 'until', 'user', 'connection']);

const CONTENT_TYPES: Record<ExportFormat, string> = {
  jsonl: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8; header=present',
  cef: 'text/plain; charset=utf-8',
  ocsf: 'application/x-ndjson; charset=utf-8',
  bundle: 'application/gzip',
};

/** Bytes gathered before a write to the response. */
const CHUNK = 64 * 1024;

export function parseExportQuery(q: URLSearchParams): ExportQuery {
  for (const key of q.keys()) {
    if (!EXPORT_QUERY.has(key)) throw new UsageError(`unknown query parameter ${JSON.stringify(key.slice(0, 40))}; accepted: format, since, until, user, connection`);
  }
  const format = single(q, 'format') ?? 'jsonl';
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new UsageError(`format: expected one of ${EXPORT_FORMATS.join(', ')}`);
  const sinceText = single(q, 'since');
  const untilText = single(q, 'until');
  if (sinceText === undefined || untilText === undefined) throw new UsageError('since and until are required (RFC 3339)');
  const since = timestamp('since', sinceText);
  const until = timestamp('until', untilText);
  if (since >= until) throw new UsageError(`since (${since}) must be before until (${until})`);
  const user = single(q, 'user') ?? null;
  // eslint-disable-next-line no-control-regex
  if (user !== null && (user.length === 0 || user.length > 256 || /[\x00-\x1f\x7f]/.test(user))) throw new UsageError('user: expected a subject, an email or an API key name');
  const connection = single(q, 'connection') ?? null;
  if (connection !== null && !/^[a-z0-9][a-z0-9_-]{0,62}$/.test(connection)) throw new UsageError('connection: not a connection name');
  return { format: format as ExportFormat, since, until, user, connection };
}

export async function auditExport(ctx: ApiContext, id: Identity, req: IncomingMessage, res: ServerResponse, { url }: { url: URL }): Promise<void> {
  const parts = ctx.audit;
  const q = parseExportQuery(url.searchParams);
  const asked = { format: q.format, since: q.since, until: q.until, user: q.user, connection: q.connection };
  if (!mayReadAuditLog(id, ctx.config.roles)) {
    throw new DeniedError('HOOP_FORBIDDEN', 'only admins and auditors may export the audit log', { stage: 'role', data: { export: asked } });
  }
  const createdAt = new Date().toISOString();
  const aborted = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) aborted.abort(new Error('the client went away'));
  };
  res.on('close', onClose);
  const tap = { hash: createHash('sha256'), bytes: 0, sha256: null as string | null };
  const record = (data: Record<string, unknown>) =>
    ctx.recorder.record({ type: 'export.created', actor: actorOf(id), source: requestSource(ctx, req), data: { ...asked, ...data, bytes: tap.bytes, sha256: (tap.sha256 ??= tap.hash.digest('hex')) } });
  let summary: Record<string, unknown> = {};
  let spooled: SpooledBundle | null = null;
  let release = () => {};
  try {
    let body: AsyncIterable<Buffer>;
    if (q.format === 'bundle') {
      release = holdBundleSlot(parts);
      const bound = await anchoredHead(ctx, parts, createdAt);
      const span = await computeSpan(ctx.store, q, bound);
      spooled = await spoolBundle(ctx.store, parts.signer, {
        query: q, span, createdAt, createdBy: { subject: id.subject, email: id.email ?? null }, gatewayVersion: hoopVersion(),
      }, { signal: aborted.signal });
      summary = { span: spooled.manifest.span, counts: spooled.manifest.counts, verified: spooled.verification.ok, signing_key_id: spooled.manifest.signing_key_id };
      const gzip = createGzip({ level: zlib.Z_BEST_SPEED });
      // One 1 MiB chunk of the archive read ahead at a time (Readable.from would buffer 16).
      pipeline(Readable.from(bundleTar(spooled, aborted.signal), { highWaterMark: 1 }), gzip).catch(() => {}); // a failure reaches the reader through gzip
      body = gzip;
      res.writeHead(200, { 'content-type': CONTENT_TYPES.bundle, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-disposition': 'attachment; filename="hoop-audit-bundle.tar.gz"' });
    } else {
      const head = await ctx.store.head();
      const counts = { events: 0 };
      summary = counts;
      body = lines(ctx, q, head?.seq ?? 0, counts, aborted.signal);
      res.writeHead(200, { 'content-type': CONTENT_TYPES[q.format], 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    }
    for await (const chunk of body) {
      tap.hash.update(chunk);
      tap.bytes += chunk.length;
      if (!res.write(chunk)) await once(res, 'drain', { signal: aborted.signal });
    }
    await spooled?.remove(); // all read: the archive is in the socket's hands now
    // Recorded before the body ends: a client that received the whole export knows it is on record.
    await record({ ...summary, complete: true });
    res.end();
  } catch (err) {
    if (!res.headersSent) throw err;
    const reason = aborted.signal.aborted ? 'the client went away before the end' : errorMessage(err);
    res.destroy();
    await record({ ...summary, complete: false, reason: reason.slice(0, 500) }).catch((e: unknown) => ctx.logger.error({ err: errorMessage(e) }, 'cannot record export.created'));
    if (!aborted.signal.aborted) ctx.logger.error({ err: reason }, 'audit export failed');
  } finally {
    res.off('close', onClose);
    await spooled?.remove();
    release();
  }
}

/** Bundles spooled at once by one gateway: each takes the temp dir's space and a store reader. */
export const MAX_CONCURRENT_BUNDLES = 2;
const bundlesRunning = new WeakMap<ExportParts, number>();

/** Takes one of the gateway's bundle slots, or refuses (429); returns its (idempotent) release. */
function holdBundleSlot(parts: ExportParts): () => void {
  const n = bundlesRunning.get(parts) ?? 0;
  if (n >= MAX_CONCURRENT_BUNDLES) {
    throw new HttpError(429, 'HOOP_AUDIT_UNAVAILABLE', `${MAX_CONCURRENT_BUNDLES} bundle exports are running on this gateway; try again when one has ended`);
  }
  bundlesRunning.set(parts, n + 1);
  let held = true;
  return () => {
    if (held) bundlesRunning.set(parts, (bundlesRunning.get(parts) ?? 1) - 1);
    held = false;
  };
}

/**
 * Asks for a checkpoint and returns the seq of the newest one, which the bundle's span ends at
 * or before: the head as the export began, signed. Tries again if the log moved meanwhile
 * without a checkpoint from now (another replica's head, a failed write).
 */
async function anchoredHead(ctx: ApiContext, parts: ExportParts, startedAt: string): Promise<number> {
  for (let attempt = 0; attempt < 3; attempt++) {
    await parts.checkpointer.checkpoint();
    const [cp] = await ctx.store.readEvents({ types: ['checkpoint'], newestFirst: true, limit: 1, payload: false });
    const head = await ctx.store.head();
    if (cp && head && (cp.seq === head.seq || cp.time >= startedAt)) return cp.seq;
  }
  throw new HoopError('HOOP_STORE', 'cannot export a bundle: the gateway could not write a checkpoint to anchor it', { hint: "check the gateway's log and the store" });
}

/** The line formats: the range's events page by page, filtered, each as one line (csv: a row per statement). */
async function* lines(ctx: ApiContext, q: ExportQuery, bound: number, counts: { events: number; statements?: number }, signal: AbortSignal): AsyncGenerator<Buffer> {
  const version = hoopVersion();
  const csv = q.format === 'csv' ? new CsvExport() : null;
  let out = csv ? csv.header : '';
  const lineOf = (e: AuditEvent, payload: Parameters<typeof jsonlLine>[1]): string =>
    q.format === 'jsonl' ? jsonlLine(e, payload) : q.format === 'cef' ? cefLine(e, version) : ocsfLine(e, version);
  const wantPayload = q.format === 'jsonl' ? (e: AuditEvent) => matchesFilters(e, q) : () => false;
  const seqs = await rangeSeqs(ctx.store, q, bound);
  for await (const page of readPages(ctx.store, { afterSeq: seqs.after, beforeSeq: seqs.before, since: q.since, until: q.until }, signal)) {
    for await (const { event: e, payload } of withPayloads(ctx.store, page, wantPayload)) {
      const matches = matchesFilters(e, q);
      if (csv) {
        out += csv.add(e, matches);
        counts.statements = csv.statements;
      } else if (matches) {
        out += lineOf(e, payload);
      }
      if (matches) counts.events++;
      if (out.length >= CHUNK) {
        yield Buffer.from(out, 'utf8');
        out = '';
      }
    }
  }
  if (csv) {
    out += csv.finish();
    counts.statements = csv.statements;
  }
  if (out) yield Buffer.from(out, 'utf8');
}
