/**
 * `cef`: ArcSight Common Event Format, one line per event:
 *
 *   CEF:0|hoop|hoop|<version>|<signature id>|<name>|<severity>|<extension>
 *
 * Escaping (CEF "Character Encoding"): in the header, `\` and `|` are escaped with a backslash;
 * in extension values `\` and `=` are, and a newline is written `\n` (a carriage return `\r`),
 * so one event is always one line. Extension keys come from the CEF dictionary; hoop's own
 * fields ride in the custom strings with their labels. The mapping is in docs/audit-export.md.
 */
import { isIPv4 } from 'node:net';
import type { AuditEvent } from '../event.js';

export function cefHeaderEscape(s: string): string {
  return s.replace(/[\\|]/g, (c) => `\\${c}`).replace(/\r\n|\r|\n/g, ' ');
}

export function cefValueEscape(s: string): string {
  return s.replace(/[\\=]/g, (c) => `\\${c}`).replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

/** The name shown for each event type (the header's Name field). */
const NAMES: Record<string, string> = {
  'session.start': 'Session started',
  'session.end': 'Session ended',
  'query.start': 'Statement started',
  'query.end': 'Statement ended',
  'approval.requested': 'Approval requested',
  'approval.decided': 'Approval decided',
  'approval.used': 'Approval used',
  'grant.started': 'Access grant started',
  'grant.ended': 'Access grant ended',
  'auth.failed': 'Authentication failed',
  'auth.succeeded': 'Authentication succeeded',
  'access.denied': 'Access denied',
  'audit.read': 'Audit log read',
  'config.loaded': 'Configuration loaded',
  'export.created': 'Audit export created',
  checkpoint: 'Audit checkpoint signed',
  'protocol.error': 'Protocol error',
  'session.kill': 'Session kill requested',
  'session.message': 'Session message',
  'notify.failed': 'Approver notification failed',
};

/** CEF severity, 0 (low) to 10 (very high). */
export function cefSeverity(e: AuditEvent): number {
  switch (e.type) {
    case 'auth.failed':
    case 'access.denied':
    case 'protocol.error':
      return 6;
    case 'session.kill':
    case 'notify.failed':
      return 5;
    case 'query.end': {
      const outcome = e.data['outcome'];
      return outcome === 'refused' ? 6 : outcome === 'ok' ? 3 : 4;
    }
    case 'approval.decided':
      return e.data['decision'] === 'deny' ? 5 : 3;
    default:
      return 3;
  }
}

/** success / failure where the event says; null where it is neither. */
export function outcomeOf(e: AuditEvent): 'success' | 'failure' | null {
  const d = e.data;
  switch (e.type) {
    case 'auth.succeeded':
    case 'session.start':
    case 'approval.used':
    case 'grant.started':
      return 'success';
    case 'auth.failed':
    case 'access.denied':
    case 'protocol.error':
    case 'notify.failed':
      return 'failure';
    case 'query.end':
      return d['outcome'] === 'ok' ? 'success' : d['outcome'] === 'unknown' ? null : 'failure';
    case 'approval.decided':
      return d['decision'] === 'approve' ? 'success' : d['decision'] === 'deny' || d['decision'] === 'expired' ? 'failure' : null;
    default:
      return null;
  }
}

/** What happened, in one line: the statement, the reason, the decision. */
export function messageOf(e: AuditEvent): string | null {
  const d = e.data;
  const s = (k: string) => (typeof d[k] === 'string' ? (d[k] as string) : null);
  switch (e.type) {
    case 'query.start':
      return s('statement');
    case 'query.end': {
      const err = d['error'] as { code?: unknown; message?: unknown } | null | undefined;
      return err && typeof err.message === 'string' ? `${String(err.code ?? '')}: ${err.message}` : `${String(d['outcome'] ?? '')}: ${String(d['rows'] ?? 0)} rows`;
    }
    case 'approval.requested':
      return s('statement') ?? s('reason');
    case 'approval.decided':
      return [s('decision'), s('comment')].filter(Boolean).join(': ') || null;
    case 'session.start':
      return s('reason');
    default:
      return s('reason') ?? s('message') ?? s('error');
  }
}

const MAX_VALUE = 4000;

function cut(s: string): string {
  return s.length > MAX_VALUE ? `${s.slice(0, MAX_VALUE - 1)}…` : s;
}

/** An IPv4-mapped IPv6 address as the IPv4 it is. */
function ipv4Of(address: string): string | null {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return isIPv4(a) ? a : null;
}

export function cefLine(e: AuditEvent, version: string): string {
  const ext: [string, string][] = [];
  const put = (k: string, v: string | number | null | undefined) => {
    if (v !== null && v !== undefined && v !== '') ext.push([k, typeof v === 'number' ? String(v) : cut(v)]);
  };
  put('rt', Date.parse(e.time));
  put('externalId', e.id);
  if (e.actor) {
    put('suser', e.actor.email ?? e.actor.subject);
    put('suid', e.actor.subject);
    put('spriv', e.actor.groups.join(','));
  }
  const address = e.source?.address ?? null;
  if (address !== null) {
    const v4 = ipv4Of(address);
    if (v4) put('src', v4);
    else (put('c6a2', address), put('c6a2Label', 'sourceAddress'));
  }
  put('requestClientApplication', e.source?.application ?? null);
  put('act', e.type);
  put('outcome', outcomeOf(e));
  put('msg', messageOf(e));
  put('cs1Label', 'sessionId');
  put('cs1', e.session_id);
  put('cs2Label', 'connection');
  put('cs2', e.connection);
  put('cs3Label', 'hash');
  put('cs3', e.hash);
  const queryId = e.data['query_id'] ?? e.data['request'];
  if (typeof queryId === 'string') (put('cs4Label', e.type.startsWith('query.') ? 'queryId' : 'requestId'), put('cs4', queryId));
  if (e.type === 'query.end') {
    if (typeof e.data['rows'] === 'number') (put('cn2Label', 'rows'), put('cn2', e.data['rows'] as number));
    if (typeof e.data['bytes'] === 'number') put('out', e.data['bytes'] as number);
  }
  put('cn1Label', 'seq');
  put('cn1', e.seq);
  const header = ['CEF:0', 'hoop', 'hoop', version, e.type, NAMES[e.type] ?? e.type, String(cefSeverity(e))].map((f, i) => (i === 0 ? f : cefHeaderEscape(f)));
  return `${header.join('|')}|${ext.map(([k, v]) => `${k}=${cefValueEscape(v)}`).join(' ')}\n`;
}
