/** endWithGrant: a session under a grant ends at the grant's end, unless a later grant carries it on. */
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import type { ApprovalRequest } from '../../src/api/types.js';
import { endWithGrant } from '../../src/gateway/grant-end.js';

const T0 = Date.UTC(2026, 0, 3, 9, 0, 0);

function grant(id: string, untilMs: number): ApprovalRequest {
  return {
    id, kind: 'grant', connection: 'bank', requester: { subject: 'apikey:cora', email: null, groups: ['contractors'] },
    statement: null, fingerprint: null, parameters: [], reason: 'INC-7', rule: null, estimate: null, duration_ms: untilMs - T0,
    session_id: null, status: 'approved', created_at: new Date(T0).toISOString(), expires_at: new Date(untilMs).toISOString(),
    approvals: [{ approver: 'apikey:bob', decision: 'approve', comment: null, at: new Date(T0).toISOString() }], min_approvals: 1, approvers: ['dba'],
  };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(T0);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('endWithGrant', () => {
  test('ends the session at the grant\'s end, not before, asking the store once then', async () => {
    const ended: string[] = [];
    const next = vi.fn(async () => null);
    endWithGrant({ grant: grant('r-0000000a', T0 + 60_000), next, onEnd: (g) => ended.push(g.id) });
    await vi.advanceTimersByTimeAsync(59_999);
    expect(ended).toEqual([]);
    expect(next).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(ended).toEqual(['r-0000000a']);
    expect(next).toHaveBeenCalledTimes(1);
  });

  test('a later grant approved meanwhile carries the session on to its own end', async () => {
    const ended: string[] = [];
    const later = grant('r-0000000b', T0 + 120_000);
    const next = vi.fn(async () => (Date.now() < T0 + 120_000 ? later : null));
    const watch = endWithGrant({ grant: grant('r-0000000a', T0 + 60_000), next, onEnd: (g) => ended.push(g.id) });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(ended).toEqual([]);
    expect(watch.current.id).toBe('r-0000000b');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(ended).toEqual(['r-0000000b']);
  });

  test('fails closed: a store that cannot answer at the end ends the session', async () => {
    const ended: [string, unknown][] = [];
    endWithGrant({ grant: grant('r-0000000a', T0 + 1_000), next: async () => { throw new Error('store down'); }, onEnd: (g, err) => ended.push([g.id, err]) });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(ended).toEqual([['r-0000000a', new Error('store down')]]);
  });

  test('a grant longer than a timer can wait (about 24.8 days) still ends on time, not at once', async () => {
    const ended: string[] = [];
    const days40 = 40 * 86_400_000;
    endWithGrant({ grant: grant('r-0000000a', T0 + days40), next: async () => null, onEnd: (g) => ended.push(g.id) });
    await vi.advanceTimersByTimeAsync(days40 - 1);
    expect(ended).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(ended).toEqual(['r-0000000a']);
  });

  test('stop: a session that ended by itself is never ended again', async () => {
    const onEnd = vi.fn();
    const watch = endWithGrant({ grant: grant('r-0000000a', T0 + 1_000), next: async () => null, onEnd });
    watch.stop();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(onEnd).not.toHaveBeenCalled();
  });
});
