import { describe, expect, test } from 'vitest';
import { QUERY_END_PAYLOAD_PATHS, dataWithPayload, splitPayload } from '../../src/audit/payload.js';

const queryEnd = () => ({
  query_id: 'q1',
  outcome: 'ok',
  rows: 1,
  result: { sets: [{ columns: ['a'], rows: [['1']], tag: 'SELECT 1', statement: 0 }], truncated: false, sha256: 'ab' },
  messages: { notices: 1, notifications: 0, bytes: 10, kept: [{ kind: 'notice', message: 'hi' }], truncated: false, sha256: 'cd' },
  upload: { messages: 0, bytes: 0, rows: 0, sha256: 'ef', truncated: false, copies: [] as unknown[] },
});

describe('event payloads', () => {
  test('the returned rows and kept messages move out of data and come back where they were', () => {
    const data = queryEnd();
    const split = splitPayload(data, QUERY_END_PAYLOAD_PATHS);
    expect(split.payload).toEqual({ 'result.sets': data.result.sets, 'messages.kept': data.messages.kept });
    expect(split.data).toEqual({ ...data, result: { truncated: false, sha256: 'ab' }, messages: { ...data.messages, kept: undefined } });
    expect(split.data.result).not.toHaveProperty('sets');
    expect(data.result.sets).toHaveLength(1); // the input is not changed
    expect(dataWithPayload({ data: split.data, payload: split.payload!, payload_sha256: 'x' })).toEqual(data);
  });

  test('nothing returned: no payload at all', () => {
    const data = { ...queryEnd(), result: { sets: [], truncated: false, sha256: 'ab' } };
    const { messages: _m, ...noMessages } = data;
    expect(splitPayload(noMessages, QUERY_END_PAYLOAD_PATHS)).toEqual({ data: noMessages });
  });

  test('a pruned payload says so instead of inventing rows', () => {
    const { data } = splitPayload(queryEnd(), QUERY_END_PAYLOAD_PATHS);
    expect(dataWithPayload({ data, payload: null, payload_sha256: 'x' })).toEqual({ ...data, payload_pruned: true });
    expect(dataWithPayload({ data })).toBe(data);
  });
});
