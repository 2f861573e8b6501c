/**
 * HTTP plumbing for the API: one mapping from HoopError codes to HTTP statuses, JSON responses
 * with the `{"error":{"code","message"}}` body, a size-limited body reader, and the server itself
 * (https when the config has `tls`).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { HoopError, type HoopErrorCode } from '../errors.js';

/** Largest request body any route accepts. */
export const MAX_BODY_BYTES = 64 * 1024;

const STATUS: Record<HoopErrorCode, number> = {
  HOOP_USAGE: 400,
  HOOP_PROTOCOL: 400,
  HOOP_NOT_LOGGED_IN: 401,
  HOOP_AUTH_REJECTED: 401,
  HOOP_FORBIDDEN: 403,
  HOOP_POLICY_DENIED: 403,
  HOOP_APPROVAL_DENIED: 403,
  HOOP_NOT_FOUND: 404,
  HOOP_APPROVAL_PENDING: 409,
  HOOP_CONFIG_INVALID: 500,
  HOOP_AUDIT_VERIFY_FAILED: 500,
  HOOP_INTERNAL: 500,
  HOOP_UPSTREAM: 502,
  HOOP_NETWORK: 502,
  HOOP_AUDIT_UNAVAILABLE: 503,
  HOOP_STORE: 503,
};

/** An error that must reach the client with a status the code alone does not say (405, 413). */
export class HttpError extends HoopError {
  constructor(readonly status: number, code: HoopErrorCode, message: string) {
    super(code, message);
  }
}

export function statusOf(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof HoopError) return STATUS[err.code] ?? 500;
  return 500;
}

export interface ErrorBody {
  error: { code: HoopErrorCode; message: string; hint?: string };
}

/** The body for an error; anything that is not a HoopError is reported without its details. */
export function errorBody(err: unknown): ErrorBody {
  if (err instanceof HoopError) {
    return { error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } };
  }
  return { error: { code: 'HOOP_INTERNAL', message: 'internal error' } };
}

const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

export function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': contentType, 'content-length': String(Buffer.byteLength(text)) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  const status = statusOf(err);
  const headers: Record<string, string> = status === 401 ? { 'www-authenticate': 'Bearer realm="hoop"' } : {};
  sendJson(res, status, errorBody(err), headers);
}

/** Reads the request body, refusing (413) past `limit` bytes whatever Content-Length claims. */
export async function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, 'HOOP_USAGE', `request body larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'HOOP_USAGE', `request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function createServer(handler: RequestHandler, tls?: { cert: string; key: string }): Server {
  const options = {
    // Slow-loris bounds: headers within 10 s, a whole request within 30 s. Upgraded tunnels are
    // not requests any more and are not affected.
    headersTimeout: 10_000,
    requestTimeout: 30_000,
    maxHeaderSize: 16 * 1024,
  };
  const server = tls ? createHttpsServer({ ...options, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler) : createHttpServer(options, handler);
  server.keepAliveTimeout = 5_000;
  return server as Server;
}

/** A header value, single, trimmed to `max` characters, without control characters. */
export function headerText(req: IncomingMessage, name: string, max: number): string | null {
  const v = req.headers[name.toLowerCase()];
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return null;
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x1f\x7f]/g, '').trim();
  return clean === '' ? null : clean.slice(0, max);
}
