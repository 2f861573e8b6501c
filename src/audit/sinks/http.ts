/**
 * The HTTP sink: each batch is one POST of JSON, delivered when the receiver answers 2xx; any
 * other answer, a timeout or a connection failure is a failed attempt, retried by the deliverer.
 *
 *   format: hec    Splunk HTTP Event Collector: newline-separated objects
 *                  {"event": <event>, "host": …, "source": "hoop", "sourcetype": "hoop:audit", "time": <epoch seconds>}
 *                  with `Authorization: Splunk <token>`
 *   format: json   a JSON array of events, with `Authorization: Bearer <token>`
 *
 * Each request also says which events it carries (`X-Hoop-First-Seq`, `X-Hoop-Last-Seq`), so a
 * receiver can drop a batch it has already stored. The token is sent only in the Authorization
 * header and never appears in an error this module raises (a receiver echoing it is redacted).
 */
import { hostname as osHostname } from 'node:os';
import { Agent, request } from 'undici';
import { errorMessage } from '../../errors.js';
import { redactSecret } from '../../store/redact.js';
import type { HttpSinkConfig, SinkRecord, SinkTransport } from './sink.js';

export const HTTP_TIMEOUT_MS = 10_000;
const ERROR_BODY_MAX = 200;

/** The body of one batch in the sink's format. */
export function httpBody(format: HttpSinkConfig['format'], records: readonly SinkRecord[], host: string): string {
  if (format === 'json') return `[${records.map((r) => r.json).join(',')}]`;
  const h = JSON.stringify(host);
  // Keys in canonical order; `time` in seconds with the event's milliseconds.
  return records.map((r) => `{"event":${r.json},"host":${h},"source":"hoop","sourcetype":"hoop:audit","time":${Date.parse(r.time) / 1000}}`).join('\n');
}

export function authorizationOf(cfg: Pick<HttpSinkConfig, 'format' | 'token'>): string | null {
  if (cfg.token === null) return null;
  return cfg.format === 'hec' ? `Splunk ${cfg.token}` : `Bearer ${cfg.token}`;
}

export class HttpTransport implements SinkTransport {
  private readonly agent = new Agent({ keepAliveTimeout: 10_000 });
  private readonly host: string;

  constructor(private readonly cfg: HttpSinkConfig, private readonly o: { timeoutMs?: number; hostname?: string } = {}) {
    this.host = o.hostname ?? osHostname();
  }

  async deliver(records: readonly SinkRecord[], signal: AbortSignal): Promise<void> {
    const timeoutMs = this.o.timeoutMs ?? HTTP_TIMEOUT_MS;
    const headers: Record<string, string> = {
      ...this.cfg.headers,
      'content-type': 'application/json',
      'user-agent': 'hoop-gateway',
      'x-hoop-first-seq': String(records[0]!.seq),
      'x-hoop-last-seq': String(records[records.length - 1]!.seq),
    };
    const authorization = authorizationOf(this.cfg);
    if (authorization) headers['authorization'] = authorization;
    const ac = new AbortController();
    const onAbort = () => ac.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => ac.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      await postFor2xx(this.cfg.url, { headers, body: httpBody(this.cfg.format, records, this.host), signal: ac.signal, dispatcher: this.agent });
    } catch (err) {
      const reason = ac.signal.aborted ? errorMessage(ac.signal.reason) : errorMessage(err);
      throw new Error(this.redact(reason));
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }

  private redact(message: string): string {
    let m = redactSecret(message, this.cfg.token);
    for (const v of Object.values(this.cfg.headers)) if (v.length >= 8) m = redactSecret(m, v); // a header may hold a credential too
    return m;
  }
}

/**
 * One POST that must be answered 2xx (the HTTP sinks and the approver webhooks): resolves on 2xx,
 * else throws `HTTP <status>: <the start of the body>`. undici.request follows no redirects, so a
 * 3xx is a failure, never a hop elsewhere with the credentials.
 */
export async function postFor2xx(url: string, o: { headers: Record<string, string>; body: string | Buffer; signal: AbortSignal; dispatcher: Agent }): Promise<void> {
  const res = await request(url, { method: 'POST', ...o });
  if (res.statusCode >= 200 && res.statusCode < 300) {
    await res.body.dump();
    return;
  }
  const text = await readSome(res.body, ERROR_BODY_MAX);
  throw new Error(`HTTP ${res.statusCode}${text ? `: ${text}` : ''}`);
}

/** The start of a response body, whitespace folded, for an error message. */
export async function readSome(body: AsyncIterable<Buffer> & { destroy(): unknown }, max: number): Promise<string> {
  let text = '';
  try {
    for await (const chunk of body) {
      text += chunk.toString('utf8');
      if (text.length >= max) break;
    }
  } catch {
    // what was read is enough to say why
  } finally {
    body.destroy();
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, max);
}
