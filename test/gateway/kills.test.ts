/** SessionKills on its own: the poll finds a request nobody signalled (a lost NOTIFY, SQLite). */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { SessionKills, killMessage, killReason, type SessionKill } from '../../src/gateway/kills.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';

let store: Store | undefined;
let kills: SessionKills | undefined;
afterEach(async () => {
  await kills?.close();
  await store?.close();
});

test('a held session is ended by the poll when a request appears in the store; others are left alone', async () => {
  store = await openStore('sqlite::memory:');
  kills = new SessionKills({ store, logger: pino({ level: 'silent' }), pollMs: 20 });
  await kills.start();
  const [held, other] = [randomUUID(), randomUUID()];
  const ended: SessionKill[] = [];
  const forget = kills.hold(held, (k) => ended.push(k));
  kills.hold(other, () => ended.push({ session_id: other } as SessionKill));
  const request = { session_id: held, requested_by: 'apikey:root', reason: 'INC-7', requested_at: new Date().toISOString() };
  await store.requestKill(request);
  await expect.poll(() => ended).toEqual([request]);
  forget(); // already forgotten when it ended: harmless
  expect(kills.endHere(request)).toBe(false); // once only
  expect(killMessage(request)).toBe('hoop: this session was ended by apikey:root: INC-7');
  expect(killReason({ ...request, reason: null })).toBe('killed by apikey:root');
});
