import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { watchBackendKey } from '../../src/client/tunnel.js';
import { authenticationOk, backendKeyData, errorResponse, parameterStatus, readyForQuery } from '../../src/protocols/postgres/messages.js';

/** Feeds `chunks` as the gateway's bytes; returns the keys seen and whether it still listens. */
function watch(chunks: Buffer[]): { keys: string[]; listening: boolean } {
  const stream = new PassThrough();
  const keys: string[] = [];
  watchBackendKey(stream, (k) => keys.push(k));
  for (const c of chunks) stream.emit('data', c);
  return { keys, listening: stream.listenerCount('data') > 0 };
}

const KEY = backendKeyData(0x01020304, -2);
const HELLO = Buffer.concat([authenticationOk(), parameterStatus('server_version', '16.4'), KEY, readyForQuery('I')]);

describe('watchBackendKey', () => {
  it('finds the key wherever the bytes are split, and stops looking', () => {
    for (let cut = 0; cut <= HELLO.length; cut++) {
      expect(watch([HELLO.subarray(0, cut), HELLO.subarray(cut)]), `split at ${cut}`).toEqual({ keys: ['01020304fffffffe'], listening: false });
    }
    const bytes = [...HELLO].map((b) => Buffer.from([b]));
    expect(watch(bytes)).toEqual({ keys: ['01020304fffffffe'], listening: false });
  });

  it('stops at ReadyForQuery or an ErrorResponse: a key after them is not the session\'s', () => {
    expect(watch([readyForQuery('I'), KEY])).toEqual({ keys: [], listening: false });
    expect(watch([errorResponse({ severity: 'FATAL', code: '28000', message: 'no' }), KEY])).toEqual({ keys: [], listening: false });
  });

  it('stops at a malformed frame and after 64 KiB without a key', () => {
    expect(watch([Buffer.from([0x53, 0, 0, 0, 2]), KEY])).toEqual({ keys: [], listening: false });
    const big = parameterStatus('application_name', 'x'.repeat(70 * 1024));
    expect(watch([big, KEY])).toEqual({ keys: [], listening: false });
    const many = Array.from({ length: 3000 }, () => parameterStatus('TimeZone', 'Europe/Amsterdam'));
    expect(watch([...many, KEY])).toEqual({ keys: [], listening: false });
  });

  it('keeps looking while the gateway\'s first messages are still coming', () => {
    expect(watch([authenticationOk(), parameterStatus('a', 'b')])).toEqual({ keys: [], listening: true });
  });
});
