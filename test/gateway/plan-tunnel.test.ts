/**
 * The decision hook through the real tunnel and gateway: a refused statement never reaches
 * PostgreSQL (its own statement log says so) and the record keeps the decision; a column
 * transform reaches the client, and the record holds only what the client received.
 */
import { dataWithPayload } from '../../src/audit/payload.js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { RUN, valueTransform, type ColumnTransform } from '../../src/protocols/engine.js';
import { startTruth, type Truth } from '../helpers/truth.js';
import { tunnelClient } from './ws-client.js';

let t: Truth;
const mask: ColumnTransform = valueTransform(() => Buffer.from('***-**-****'));

beforeAll(async () => {
  t = await startTruth('hoop-plan-tunnel', {
    planner: async (s, { identity }) => {
      if (/DELETE/i.test(s.statement)) return { action: 'refuse', code: '42501', message: `hoop: ${identity.subject} may not delete`, summary: { rule: 'no-deletes' } };
      if (/ssn/i.test(s.statement)) return { action: 'run', columns: (cols) => cols.map((c) => (c.name === 'ssn' ? mask : null)), summary: { masked: ['ssn'] } };
      return RUN;
    },
  });
  await t.pg.sql(`CREATE TABLE people (id int, ssn text); INSERT INTO people VALUES (1, '123-45-6789')`);
});
afterAll(async () => {
  await t?.stop();
});

test('refused by plan: the client gets the SQLSTATE, the server never sees it, the record keeps the decision', async () => {
  const c = await tunnelClient(t.gw.url, 'bank', t.gw.keys['alice']!, { application: 'plan-refuse' });
  await expect(c.query('DELETE FROM people')).rejects.toMatchObject({ code: '42501', message: 'hoop: apikey:alice may not delete' });
  expect((await c.query('SELECT count(*)::int AS n FROM people')).rows).toEqual([{ n: 1 }]);
  await c.end();
  const logged = await t.logged('plan-refuse');
  expect(logged.map((l) => l.text)).toEqual(['SELECT count(*)::int AS n FROM people']);
  const events = await t.gw.store.readEvents({});
  const start = events.find((e) => e.type === 'query.start' && e.data['statement'] === 'DELETE FROM people')!;
  expect(start.data['decision']).toEqual({ action: 'refuse', code: '42501', message: 'hoop: apikey:alice may not delete', rule: 'no-deletes' });
  await expect.poll(async () => (await t.gw.store.readEvents({})).find((e) => e.type === 'query.end' && e.data['query_id'] === start.data['query_id'])?.data['outcome']).toBe('refused');
});

test('a column transform: the client and the record see the masked value, never the clear one', async () => {
  const c = await tunnelClient(t.gw.url, 'bank', t.gw.keys['alice']!, { application: 'plan-mask' });
  expect((await c.query('SELECT id, ssn FROM people')).rows).toEqual([{ id: 1, ssn: '***-**-****' }]);
  expect((await c.query('SELECT ssn FROM people WHERE id = $1', [1])).rows).toEqual([{ ssn: '***-**-****' }]);
  await c.end();
  await expect.poll(async () => (await t.gw.store.readEvents({})).filter((e) => e.type === 'query.end' && JSON.stringify(dataWithPayload(e)).includes('***-**-****')).length).toBe(2);
  const all = JSON.stringify(await t.gw.store.readEvents({}));
  expect(all).not.toContain('123-45-6789');
  expect(all).toContain('"masked":["ssn"]');
});
