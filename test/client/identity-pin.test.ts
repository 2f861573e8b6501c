import { describe, expect, it } from 'vitest';
import { pinnedToken } from '../../src/client/identity-pin.js';

describe('pinnedToken', () => {
  const owners: Record<string, string> = { 'token-a1': 'alice', 'token-a2': 'alice', 'token-b': 'bob' };

  it('asks once per distinct token, even for clients connecting at once; refuses another subject', async () => {
    let current = 'token-a1';
    const asked: string[] = [];
    const token = pinnedToken({
      token: async () => current,
      subjectOf: async (t) => (asked.push(t), owners[t]!),
      subject: 'alice',
      restart: 'restart `hoop connect bank`',
    });
    expect(await Promise.all([token(), token(), token()])).toEqual(['token-a1', 'token-a1', 'token-a1']);
    current = 'token-a2'; // a refresh: same subject
    expect(await token()).toBe('token-a2');
    current = 'token-b';
    await expect(token()).rejects.toThrow("this tunnel was opened as alice, but the credential is now bob's; new connections are refused: restart `hoop connect bank` to connect as bob");
    await expect(token()).rejects.toMatchObject({ code: 'HOOP_AUTH_REJECTED' });
    expect(asked).toEqual(['token-a1', 'token-a2', 'token-b']);
  });

  it('a failed lookup is not remembered', async () => {
    let fail = true;
    const token = pinnedToken({
      token: async () => 'token-a1',
      subjectOf: async () => {
        if (fail) throw new Error('gateway unreachable');
        return 'alice';
      },
      subject: 'alice',
      restart: 'restart',
    });
    await expect(token()).rejects.toThrow('gateway unreachable');
    fail = false;
    expect(await token()).toBe('token-a1');
  });
});
