/**
 * What every SIEM sink shares (docs/audit-sinks.md): its configuration as validated
 * (src/gateway/config.ts `audit.sinks`), the record a transport sends, and the transport interface.
 *
 * A transport only moves bytes. Which events, in which order, from where, and what happens on a
 * failure is the deliverer's (deliverer.ts): a transport's `deliver` resolves once the batch
 * counts as delivered by that transport's own rule (HTTP: a 2xx answer; file: fsynced; syslog:
 * written on a connection that then stayed healthy for a grace period) and rejects otherwise.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../chain.js';
import type { AuditEvent, AuditEventType } from '../event.js';

interface SinkCommon {
  /** The cursor's key: `name`, or derived from the type and target (sinkIdOf). */
  id: string;
  name: string | null;
  /** Add each event's payload (`payload`: the object, or null once pruned). Default false. */
  includePayload: boolean;
  /** Where a sink without a cursor starts: the whole log, or the head when it is first seen. */
  start: 'beginning' | 'now';
}

export interface SyslogSinkConfig extends SinkCommon {
  kind: 'syslog';
  host: string;
  port: number;
  tls: boolean;
  /** PEM: trust this CA (a private one) instead of the system's. */
  ca: string | null;
  appName: string;
}

export interface HttpSinkConfig extends SinkCommon {
  kind: 'http';
  url: string;
  token: string | null;
  format: 'hec' | 'json';
  headers: Record<string, string>;
}

export interface FileSinkConfig extends SinkCommon {
  kind: 'file';
  path: string;
  maxBytes: number;
  keep: number;
}

export type SinkConfig = SyslogSinkConfig | HttpSinkConfig | FileSinkConfig;

/** A sink's id when it has no `name`: its type and target (an HTTP URL's path and query only as a digest). */
export function sinkIdOf(s: { kind: 'syslog'; host: string; port: number } | { kind: 'http'; url: string } | { kind: 'file'; path: string }): string {
  switch (s.kind) {
    case 'syslog':
      return `syslog:tcp://${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;
    case 'http': {
      // The path and query may hold a credential (some collectors take one there): the id, shown
      // in /metrics and logs and kept in the store, has the origin and a digest of the rest.
      const u = new URL(s.url);
      return `http:${u.origin}#${createHash('sha256').update(s.url).digest('hex').slice(0, 12)}`;
    }
    case 'file':
      return `file:${s.path}`;
  }
}

/** One event as the transports send it: encoded once, with what the framings need beside it. */
export interface SinkRecord {
  seq: number;
  type: AuditEventType;
  time: string;
  hash: string;
  /** The event's canonical JSON: every field as stored (`hash` too), and `payload` if asked for. */
  json: string;
}

export function sinkRecordOf(e: AuditEvent): SinkRecord {
  return { seq: e.seq, type: e.type, time: e.time, hash: e.hash, json: canonicalJson(e) };
}

export interface SinkTransport {
  /**
   * How many batches may be in flight at once (default 1: one after the other). Above 1 only for
   * a transport that keeps them in order itself (one stream) and settles them in that order.
   */
  readonly window?: number;
  /** With a window: true while earlier batches are still being written, so no other starts yet (its deadline would run while it queues). */
  busy?(): boolean;
  /** Resolves once `records` count as delivered (see the file's opening comment); rejects otherwise. */
  deliver(records: readonly SinkRecord[], signal: AbortSignal): Promise<void>;
  /** Ends connections and files; what was not delivered is sent again by the next run. */
  close(): Promise<void>;
}

/** RFC 5424 §6.2.1 severities. */
export const SEVERITY = { error: 3, warning: 4, notice: 5, info: 6 } as const;

/**
 * How much an event matters to a SIEM: refusals and failed sign-ins are warnings, a delivery given
 * up is an error, changes of who may do what (approvals, grants, config, kills, audit reads and
 * exports) are notices, the rest (sessions, statements, checkpoints) informational.
 */
export function severityOf(type: string): number {
  switch (type) {
    case 'auth.failed':
    case 'access.denied':
    case 'protocol.error':
      return SEVERITY.warning;
    case 'notify.failed':
      return SEVERITY.error;
    case 'session.kill':
    case 'config.loaded':
    case 'audit.read':
    case 'export.created':
      return SEVERITY.notice;
    default:
      return type.startsWith('approval.') || type.startsWith('grant.') ? SEVERITY.notice : SEVERITY.info;
  }
}
