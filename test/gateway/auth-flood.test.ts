/**
 * Security: unauthenticated failures must not grow the audit log or the gateway's memory without
 * bound, even from a client that rotates source addresses (an IPv6 /64 holds 2^64 of them).
 */
import { describe, expect, test } from 'vitest';
import { FailureLimiter, failureKey } from '../../src/gateway/routes.js';

describe('auth.failed limiter', () => {
  test('addresses rotated within one window share a global cap', () => {
    const l = new FailureLimiter(20, 60_000, 200);
    let recorded = 0;
    for (let i = 0; i < 5_000; i++) if (l.admit(`10.0.${i >> 8}.${i & 255}`, 1_000) !== null) recorded++;
    expect(recorded).toBe(200);
  });

  test('what the global cap suppressed is reported in the next window', () => {
    const l = new FailureLimiter(5, 1_000, 2);
    expect([l.admit('a', 0), l.admit('b', 1), l.admit('c', 2), l.admit('d', 3)]).toEqual([0, 0, null, null]);
    expect(l.admit('c', 1_000)).toBe(1);
  });

  test('the number of tracked addresses stays bounded, and pruned windows still report', () => {
    const l = new FailureLimiter(1, 1_000, 1_000_000, 100);
    l.admit('x', 0);
    expect(l.admit('x', 1)).toBeNull(); // x has one suppressed
    for (let i = 0; i < 10_000; i++) l.admit(`k${i}`, 10);
    expect(l.size).toBeLessThanOrEqual(101);
    for (let i = 0; i < 200; i++) l.admit(`later${i}`, 5_000); // x's window expired: pruned
    expect(l.size).toBeLessThanOrEqual(101);
    // x's suppressed failure was not lost: it rides on a recorded event
    const reports: number[] = [];
    for (let i = 0; i < 5; i++) reports.push(l.admit(`fresh${i}`, 20_000) ?? 0);
    expect(reports.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
  });

  test('full(): an address that used its burst in this window, counting nothing itself (the native listener\'s login limit)', () => {
    const l = new FailureLimiter(3, 1_000, Number.POSITIVE_INFINITY);
    for (let t = 0; t < 3; t++) {
      expect(l.full('a', t)).toBe(false);
      l.admit('a', t);
    }
    expect(l.full('a', 10)).toBe(true);
    expect(l.full('a', 10)).toBe(true); // asking again counts nothing
    expect(l.full('b', 10)).toBe(false);
    expect(l.full('a', 1_000)).toBe(false); // the window is over
  });

  test('an IPv6 /64 is one address; IPv4 and IPv4-mapped stay themselves', () => {
    expect(failureKey('2001:db8:1:2::1')).toBe(failureKey('2001:db8:1:2:ffff:eeee:dddd:cccc'));
    expect(failureKey('2001:db8:1:2::1')).not.toBe(failureKey('2001:db8:1:3::1'));
    expect(failureKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(failureKey('::1')).toBe('0:0:0:0::/64');
    expect(failureKey('192.0.2.7')).toBe('192.0.2.7');
    expect(failureKey('::ffff:192.0.2.7')).toBe('::ffff:192.0.2.7');
    expect(failureKey(null)).toBe('unknown');
  });
});
