import { describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../../src/net/loopback.js';

describe('isLoopbackHost', () => {
  it.each([
    'localhost', 'LOCALHOST.', 'Localhost',
    '127.0.0.1', '127.0.0.2', '127.255.255.254',
    '::1', '[::1]', '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1', '[::ffff:127.0.0.1]', '::ffff:7f00:1', '[::ffff:7f00:1]',
  ])('%s is loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  it.each([
    '0.0.0.0', '::', '[::]', '10.0.0.1', '128.0.0.1', '192.0.2.1', '::ffff:10.0.0.1', '::127.0.0.1',
    'localhost.example.com', '127.0.0.1.nip.io', 'db.localhost', 'localhost..',
    '', '[]', '[127.0.0.1]', '[localhost]', '127.1', '127.0.0.256', ' 127.0.0.1', '::1%lo',
  ])('%j is not loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });

  it('agrees with what URL parsing makes of a loopback address', () => {
    for (const url of ['http://[::ffff:127.0.0.1]:8009', 'http://[0:0:0:0:0:0:0:1]/', 'http://127.1/', 'http://LOCALHOST./']) {
      expect(isLoopbackHost(new URL(url).hostname)).toBe(true);
    }
    expect(isLoopbackHost(new URL('http://127.0.0.1.nip.io/').hostname)).toBe(false);
  });
});
