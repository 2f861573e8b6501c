/**
 * When the gateway cannot reach or log in to the database, the user learns which step failed and
 * nothing about the infrastructure (address, port, service account, the server's words), in psql,
 * the API and `hoop sessions show`; admins and auditors, and the hash-chained record, keep the
 * operator's account in `session.end` `data.detail`.
 */
import { until } from '../helpers/poll.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { UPSTREAM_FAILED_MESSAGE } from '../../src/gateway/event-view.js';
import { runHoop } from '../cli/helpers.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { passwordOf } from '../helpers/postgres.js';
import { tunnelClient } from './ws-client.js';

const upstream = inject('upstream');
const WRONG_PASSWORD = `wrong-${randomBytes(6).toString('hex')}`;
/** A role that may log in but has no connections left: "too many connections for role". */
const CAPPED_ROLE = `hoop_capped_${randomBytes(4).toString('hex')}`;
const CAPPED_PASSWORD = `capped-${randomBytes(6).toString('hex')}`;
const HINT = "; an administrator can find the cause in the gateway's log";

let gw: TestGateway;
let deadPort: number;
const lines: Record<string, unknown>[] = [];
/** connection name -> the id of its failed session */
const sessions: Record<string, string> = {};

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: upstream.host, port: upstream.port, database: upstream.database, user: upstream.users.scram, password: passwordOf(upstream.users.scram) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  deadPort = await freePort();
  await admin((c) => c.query(`CREATE ROLE ${CAPPED_ROLE} LOGIN PASSWORD '${CAPPED_PASSWORD}' CONNECTION LIMIT 0`));
  const base = bankConnection(upstream).upstream as Record<string, unknown>;
  const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(JSON.parse(chunk.toString())), cb()) });
  gw = await startTestGateway({
    upstream,
    connections: [
      bankConnection(upstream, { name: 'down', upstream: { ...base, port: deadPort } }),
      bankConnection(upstream, { name: 'badpw', upstream: { ...base, password: WRONG_PASSWORD } }),
      bankConnection(upstream, { name: 'capped', upstream: { ...base, user: CAPPED_ROLE, password: CAPPED_PASSWORD } }),
    ],
    logger: pino({ level: 'info' }, sink),
  });
  for (const name of ['down', 'badpw', 'capped']) {
    await expect(tunnelClient(gw.url, name, gw.keys['alice']!)).rejects.toThrow(/^hoop: /);
  }
  // session.end is recorded after the fact: wait for all three.
  await until(async () => (await gw.store.readEvents({})).filter((e) => e.type === 'session.end').length >= 3, { what: 'the three session.end events' });
  for (const e of await gw.store.readEvents({})) if (e.type === 'session.end') sessions[e.connection!] = e.session_id!;
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await admin((c) => c.query(`DROP ROLE IF EXISTS ${CAPPED_ROLE}`));
});

async function get(path: string, who: string) {
  const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${gw.keys[who]}` } });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: JSON.parse(text) as any };
}

const endOf = (detail: any) => detail.events.find((e: any) => e.type === 'session.end');
const as = (who: string) => ({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys[who]! } });

/** What the user must never see: where and as whom the gateway connects, and the server's words. */
function expectNoInfrastructure(text: string, connection: string): void {
  const u = bankConnection(upstream).upstream as { port: number; user: string };
  for (const s of [`:${deadPort}`, String(deadPort), `:${u.port}`, u.user, CAPPED_ROLE, 'upstream 127.0.0.1', 'password authentication failed', 'too many connections', 'ECONNREFUSED']) {
    expect(text, `${connection}: ${s}`).not.toContain(s);
  }
}

const cases = [
  { connection: 'down', told: `the database behind this connection is unreachable from the gateway${HINT}`, detail: () => new RegExp(`^upstream 127\\.0\\.0\\.1:${deadPort}: could not connect: .*ECONNREFUSED`) },
  { connection: 'badpw', told: `the database refused the gateway's login (SQLSTATE 28P01)${HINT}`, detail: () => new RegExp(`^upstream 127\\.0\\.0\\.1:${upstream.port}: password authentication failed for user "${upstream.users.scram}" \\(SQLSTATE 28P01\\)$`) },
  { connection: 'capped', told: `the database refused the gateway's login (SQLSTATE 53300)${HINT}`, detail: () => new RegExp(`^upstream 127\\.0\\.0\\.1:${upstream.port}: too many connections for role "${CAPPED_ROLE}" \\(SQLSTATE 53300\\)$`) },
];

describe.each(cases)('upstream failure on $connection', ({ connection, told, detail }) => {
  test('the stored session.end holds both the step the client was told and the operator detail', async () => {
    const end = (await gw.store.readEvents({})).find((e) => e.type === 'session.end' && e.connection === connection)!;
    expect(end.data).toEqual({ reason: 'upstream-failed', error: told, detail: expect.stringMatching(detail()) });
  });

  test('alice (the session\'s user) gets the step only from the API, with the withheld field named', async () => {
    const r = await get(`/api/v1/sessions/${sessions[connection]}`, 'alice');
    expect(r.status).toBe(200);
    expect(endOf(r.json)).toMatchObject({ data: { reason: 'upstream-failed', error: told }, redacted: ['data.detail'] });
    expect(endOf(r.json).data).not.toHaveProperty('detail');
    expectNoInfrastructure(r.text, connection);
    const list = await get('/api/v1/sessions', 'alice');
    expect(list.json.map((s: any) => s.id)).toContain(sessions[connection]);
    expectNoInfrastructure(list.text, connection);
  });

  test.each(['carol', 'root'])('%s (auditor, admin) gets the detail, as recorded', async (who) => {
    const r = await get(`/api/v1/sessions/${sessions[connection]}`, who);
    expect(r.status).toBe(200);
    const end = endOf(r.json);
    expect(end.data).toEqual({ reason: 'upstream-failed', error: told, detail: expect.stringMatching(detail()) });
    expect(end).not.toHaveProperty('redacted');
    const stored = (await gw.store.getSession(sessions[connection]!))!.events;
    expect(r.json.events).toEqual(stored);
  });

  test('hoop sessions show: alice sees the step, carol also the detail', async () => {
    const mine = await runHoop(['sessions', 'show', sessions[connection]!], as('alice'));
    expect(mine.code).toBe(0);
    expect(mine.stdout).toContain(`upstream-failed)\nError:      ${told}\n`);
    expect(mine.stdout).not.toContain('Detail:');
    expectNoInfrastructure(mine.stdout, connection);
    const json = await runHoop(['--json', 'sessions', 'show', sessions[connection]!], as('alice'));
    expectNoInfrastructure(json.stdout, connection);
    const audit = await runHoop(['sessions', 'show', sessions[connection]!], as('carol'));
    expect(audit.code).toBe(0);
    expect(audit.stdout).toContain(`Error:      ${told}\nDetail:     `);
    expect(audit.stdout.split('\n').find((l) => l.startsWith('Detail:'))!.slice(12)).toMatch(detail());
  });
});

test('the gateway log has the detail; no password reaches the log or the record', async () => {
  const warned = lines.filter((l) => l['msg'] === 'could not connect to the upstream database').map((l) => String(l['err']));
  expect(warned).toHaveLength(3);
  for (const c of cases) expect(warned.some((w) => c.detail().test(w))).toBe(true);
  const everything = JSON.stringify(lines) + JSON.stringify(await gw.store.readEvents({}));
  for (const secret of [WRONG_PASSWORD, CAPPED_PASSWORD, passwordOf(upstream.users.scram), ...Object.values(gw.keys)]) {
    expect(everything).not.toContain(secret);
  }
});

test('a session.end recorded before error and detail were separated: its user gets the generic step', async () => {
  const id = randomUUID();
  const actor = { subject: 'apikey:alice', email: null, groups: ['analysts'], auth_method: 'api_key' as const };
  const at = (ms: number) => new Date(Date.now() - 60_000 + ms).toISOString();
  const legacy = 'upstream 10.1.2.3:55432: too many connections for role "hoop_svc" (SQLSTATE 53300)';
  await gw.store.appendEvents([
    { id: randomUUID(), time: at(0), type: 'session.start', actor, source: { address: '127.0.0.1', application: 'psql' }, connection: 'down', session_id: id, data: { database: 'bank' } },
    { id: randomUUID(), time: at(5), type: 'session.end', actor, source: { address: '127.0.0.1', application: 'psql' }, connection: 'down', session_id: id, data: { reason: 'upstream-failed', error: legacy } },
  ]);
  const mine = await get(`/api/v1/sessions/${id}`, 'alice');
  expect(endOf(mine.json)).toMatchObject({ data: { reason: 'upstream-failed', error: UPSTREAM_FAILED_MESSAGE }, redacted: ['data.error'] });
  expect(mine.text).not.toContain('10.1.2.3');
  expect(mine.text).not.toContain('hoop_svc');
  expect(endOf((await get(`/api/v1/sessions/${id}`, 'carol')).json).data.error).toBe(legacy);
});
