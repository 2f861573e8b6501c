import { describe, expect, test } from 'vitest';
import type { AuditEventDraft } from '../../src/audit/event.js';
import type { AuditRecorder } from '../../src/audit/recorder.js';
import { GatewayMetrics } from '../../src/gateway/metrics.js';
import { sessionAuditHooks, type SessionEndInfo } from '../../src/gateway/session-audit.js';

function hooks(o: { secrets?: (string | undefined)[]; endReason?: string | null } = {}) {
  const drafts: AuditEventDraft[] = [];
  const ended: SessionEndInfo[] = [];
  const recorder = { recordLater: (d: AuditEventDraft) => drafts.push(d), record: async () => {} } as unknown as AuditRecorder;
  const h = sessionAuditHooks({
    recorder, metrics: new GatewayMetrics(() => 0),
    identity: { subject: 'apikey:alice', name: 'alice', email: null, groups: ['analysts'], method: 'api_key', expiresAt: null } as never,
    connection: 'bank', sessionId: 's1', path: 'tunnel', address: '127.0.0.1', reason: null, database: 'bank', maxSessionMs: null,
    onEnded: (info) => ended.push(info),
    ...(o.secrets ? { secrets: o.secrets } : {}),
    ...(o.endReason !== undefined ? { endReason: () => o.endReason ?? null } : {}),
  });
  return { h, drafts, ended };
}

describe('session.end', () => {
  test('keeps error (what the client was told) and detail (the operator\'s account) apart', () => {
    const { h, drafts, ended } = hooks();
    h.sessionEnd({ reason: 'upstream-failed', error: 'the step', detail: 'upstream db:5432: too many connections for role "svc"' });
    expect(drafts[0]).toMatchObject({ type: 'session.end', data: { reason: 'upstream-failed', error: 'the step', detail: 'upstream db:5432: too many connections for role "svc"' } });
    expect(ended).toEqual([{ reason: 'upstream-failed', error: 'the step', detail: 'upstream db:5432: too many connections for role "svc"' }]);
  });

  test('no detail field when the engine gave none; the gateway\'s reason overrides the engine\'s', () => {
    const { h, drafts } = hooks({ endReason: 'gateway shutting down' });
    h.sessionEnd({ reason: 'client-closed', error: null });
    expect(drafts[0]!.data).toEqual({ reason: 'gateway shutting down', error: null, engine_reason: 'client-closed' });
  });

  test('an upstream password echoed in a message never reaches the event or the log hook', () => {
    const { h, drafts, ended } = hooks({ secrets: ['s3cr3t-pw', undefined] });
    h.sessionEnd({ reason: 'upstream-failed', error: 'told s3cr3t-pw', detail: 'upstream db:5432: bad password s3cr3t-pw' });
    expect(JSON.stringify([drafts, ended])).not.toContain('s3cr3t-pw');
    expect(drafts[0]!.data).toMatchObject({ error: 'told ***', detail: 'upstream db:5432: bad password ***' });
  });
});

describe('actor and source', () => {
  test('are encoded once per session: every event carries the same frozen snapshot, and the identity stays unfrozen', () => {
    const identity = { subject: 'apikey:alice', name: 'alice', email: null, groups: ['analysts'], method: 'api_key', expiresAt: null };
    const drafts: AuditEventDraft[] = [];
    const recorder = { recordLater: (d: AuditEventDraft) => drafts.push(d), record: async () => {} } as unknown as AuditRecorder;
    const h = sessionAuditHooks({
      recorder, metrics: new GatewayMetrics(() => 0), identity: identity as never,
      connection: 'bank', sessionId: 's1', path: 'tunnel', address: '127.0.0.1', reason: null, database: 'bank', maxSessionMs: null,
    });
    h.protocolError({ message: 'a' });
    h.sessionEnd({ reason: 'client-closed', error: null });
    expect(drafts[0]!.actor).toBe(drafts[1]!.actor);
    expect(drafts[0]!.source).toBe(drafts[1]!.source);
    expect(drafts[0]!.actor).toEqual({ subject: 'apikey:alice', email: null, groups: ['analysts'], auth_method: 'api_key' });
    expect(Object.isFrozen(drafts[0]!.actor!.groups)).toBe(true);
    identity.groups.push('dba'); // the identity is not the snapshot: it stays the caller's
    expect(drafts[1]!.actor!.groups).toEqual(['analysts']);
  });
});
