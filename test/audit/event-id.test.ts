import { describe, expect, it } from 'vitest';
import { eventId } from '../../src/audit/event-id.js';

describe('eventId', () => {
  it('is a lowercase RFC 9562 version 7 UUID carrying the time in milliseconds', () => {
    const now = Date.UTC(2026, 11, 1, 12, 34, 56, 789);
    const id = eventId(now);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(now);
  });

  it('sorts by time, and ids made in the same millisecond differ (well past one pool of random bytes)', () => {
    const ids = Array.from({ length: 5000 }, () => eventId(1_700_000_000_000));
    expect(new Set(ids).size).toBe(ids.length);
    const later = eventId(1_700_000_000_001);
    expect(ids.every((id) => id < later)).toBe(true);
    expect([eventId(0), eventId(1), eventId(2 ** 40), eventId(2 ** 47)].every((id, i, all) => i === 0 || all[i - 1]! < id)).toBe(true);
  });
});
