import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../src/units.js';

describe('formatDuration', () => {
  it('renders statement timings with the precision they need, in two units from a minute on', () => {
    expect([0.5, 12.4, 999.4, 999.6, 1_500, 45_000, 59_940, 59_960, 303_000, 7_500_000, 93_780_000].map(formatDuration))
      .toEqual(['0.50 ms', '12 ms', '999 ms', '1.0 s', '1.5 s', '45.0 s', '59.9 s', '1m 0s', '5m 3s', '2h 5m', '1d 2h']);
  });

  it('reads configured limits back in the same form', () => {
    for (const [limit, shown] of [['8h', '8h 0m'], ['1h30m', '1h 30m'], ['90s', '1m 30s'], ['2w', '14d 0h'], ['1500ms', '1.5 s']]) {
      expect(formatDuration(parseDuration(limit)!)).toBe(shown);
    }
  });

  it('has no rendering for what is not a duration', () => {
    expect([-1, Number.NaN, Number.POSITIVE_INFINITY].map(formatDuration)).toEqual(['-', '-', '-']);
  });
});

describe('parseDuration', () => {
  it('takes years of 365 days, for retention periods', () => {
    expect(parseDuration('7y')).toBe(7 * 365 * 86_400_000);
    expect(parseDuration('1y30d')).toBe(395 * 86_400_000);
    expect(parseDuration('7 years')).toBeNull();
  });
});
