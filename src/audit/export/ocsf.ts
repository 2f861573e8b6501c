/**
 * `ocsf`: one OCSF 1.1 event (JSON) per line. Classes (schema.ocsf.io):
 *
 *   Authentication      3002 (IAM, 3)                  session.start (Logon 1), session.end (Logoff 2),
 *                                                      auth.succeeded / auth.failed / access.denied (Logon 1)
 *   Datastore Activity  6005 (Application Activity, 6) query.start, query.end (Query 4)
 *   API Activity        6003 (Application Activity, 6) approval.requested (Create 1), approval.decided /
 *                                                      approval.used / grant.* (Update 3), audit.read /
 *                                                      export.created (Read 2), session.kill (Delete 4)
 *   Base Event          0    (Uncategorized, 0)        the rest (checkpoint, config.loaded, ...): Other 99
 *
 * type_uid = class_uid * 100 + activity_id. `time` is ms since the epoch; `metadata.uid` is the
 * event id, `metadata.sequence` its seq; the chain fields and hoop's own data are under
 * `unmapped.hoop`, so a SIEM copy still names the hash it can be checked against.
 */
import type { AuditEvent } from '../event.js';
import { messageOf, outcomeOf } from './cef.js';

export const OCSF_VERSION = '1.1.0';

interface ClassOf {
  class_uid: number;
  class_name: string;
  category_uid: number;
  category_name: string;
  activity_id: number;
  activity_name: string;
}

const AUTH = { class_uid: 3002, class_name: 'Authentication', category_uid: 3, category_name: 'Identity & Access Management' };
const DATASTORE = { class_uid: 6005, class_name: 'Datastore Activity', category_uid: 6, category_name: 'Application Activity' };
const API = { class_uid: 6003, class_name: 'API Activity', category_uid: 6, category_name: 'Application Activity' };
const BASE = { class_uid: 0, class_name: 'Base Event', category_uid: 0, category_name: 'Uncategorized' };

export function ocsfClassOf(type: string): ClassOf {
  switch (type) {
    case 'session.start':
    case 'auth.succeeded':
    case 'auth.failed':
    case 'access.denied':
      return { ...AUTH, activity_id: 1, activity_name: 'Logon' };
    case 'session.end':
      return { ...AUTH, activity_id: 2, activity_name: 'Logoff' };
    case 'query.start':
    case 'query.end':
      return { ...DATASTORE, activity_id: 4, activity_name: 'Query' };
    case 'approval.requested':
      return { ...API, activity_id: 1, activity_name: 'Create' };
    case 'approval.decided':
    case 'approval.used':
    case 'grant.started':
    case 'grant.ended':
      return { ...API, activity_id: 3, activity_name: 'Update' };
    case 'audit.read':
    case 'export.created':
      return { ...API, activity_id: 2, activity_name: 'Read' };
    case 'session.kill':
      return { ...API, activity_id: 4, activity_name: 'Delete' };
    default:
      return { ...BASE, activity_id: 99, activity_name: 'Other' };
  }
}

/** OCSF severity_id: 1 Informational, 2 Low, 3 Medium. */
function severityOf(e: AuditEvent): { severity_id: number; severity: string } {
  const outcome = outcomeOf(e);
  if (e.type === 'auth.failed' || e.type === 'access.denied') return { severity_id: 3, severity: 'Medium' };
  if (outcome === 'failure') return { severity_id: 2, severity: 'Low' };
  return { severity_id: 1, severity: 'Informational' };
}

function statusOf(e: AuditEvent): { status_id: number; status: string } {
  const outcome = outcomeOf(e);
  return outcome === 'success' ? { status_id: 1, status: 'Success' } : outcome === 'failure' ? { status_id: 2, status: 'Failure' } : { status_id: 0, status: 'Unknown' };
}

function userOf(e: AuditEvent): Record<string, unknown> | null {
  if (!e.actor) return null;
  return {
    uid: e.actor.subject,
    name: e.actor.email ?? e.actor.subject,
    ...(e.actor.email ? { email_addr: e.actor.email } : {}),
    groups: e.actor.groups.map((name) => ({ name })),
    type_id: e.actor.auth_method === 'system' ? 3 : 1, // 3 System, 1 User
    type: e.actor.auth_method === 'system' ? 'System' : 'User',
  };
}

export function ocsfEvent(e: AuditEvent, version: string): Record<string, unknown> {
  const c = ocsfClassOf(e.type);
  const user = userOf(e);
  const src = e.source ? { ...(e.source.address ? { ip: e.source.address } : {}), ...(e.source.application ? { name: e.source.application } : {}) } : {};
  const message = messageOf(e);
  const out: Record<string, unknown> = {
    ...c,
    type_uid: c.class_uid * 100 + c.activity_id,
    type_name: `${c.class_name}: ${c.activity_name}`,
    time: Date.parse(e.time),
    time_dt: e.time,
    ...severityOf(e),
    ...statusOf(e),
    ...(message !== null ? { message: message.length > 4000 ? `${message.slice(0, 3999)}…` : message } : {}),
    metadata: {
      version: OCSF_VERSION,
      product: { name: 'hoop', vendor_name: 'hoop', version },
      uid: e.id,
      sequence: e.seq,
      log_name: 'hoop audit log',
      ...(e.session_id ? { correlation_uid: e.session_id } : {}),
    },
    actor: user ? { user } : { app_name: 'hoop' },
    src_endpoint: src,
    unmapped: { hoop: { type: e.type, seq: e.seq, prev_hash: e.prev_hash, hash: e.hash, connection: e.connection, session_id: e.session_id, data: e.data, ...(e.payload_sha256 ? { payload_sha256: e.payload_sha256 } : {}) } },
  };
  if (c.class_uid === 3002) {
    // Authentication requires `user` (who logs on) and a service or dst_endpoint.
    out['user'] = user ?? { name: 'unknown', type_id: 0, type: 'Unknown' };
    out['service'] = { name: e.connection ? `hoop/${e.connection}` : 'hoop' };
    out['is_remote'] = true;
    if (e.session_id) out['session'] = { uid: e.session_id };
  } else if (c.class_uid === 6005) {
    // Datastore Activity requires actor and src_endpoint, and one of database / databucket / table.
    out['database'] = { name: e.connection ?? 'unknown', type_id: 1, type: 'Relational' };
    const statement = e.data['statement'];
    if (typeof statement === 'string') out['query_info'] = { query_string: statement.length > 4000 ? `${statement.slice(0, 3999)}…` : statement };
    if (e.type === 'query.end') {
      if (typeof e.data['rows'] === 'number') out['count'] = e.data['rows'];
      if (typeof e.data['duration_ms'] === 'number') out['duration'] = e.data['duration_ms'];
    }
  } else if (c.class_uid === 6003) {
    // API Activity requires actor, api and src_endpoint.
    out['api'] = { operation: e.type, service: { name: 'hoop' } };
  }
  return out;
}

export function ocsfLine(e: AuditEvent, version: string): string {
  return `${JSON.stringify(ocsfEvent(e, version))}\n`;
}
