/**
 * Nobody escapes the shared credential, on a real PostgreSQL: the gateway logs in as a
 * non-superuser service role (NOINHERIT, member of the mapped roles, no privileges of its own)
 * and each session starts as the role mapped from the caller's groups; the guard
 * (guard-plan.ts, wired here as the gateway's planner) refuses what would undo that.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { RUN } from '../../src/protocols/engine.js';
import { guardPlan } from '../../src/gateway/guard-plan.js';
import { protectedRolesOf } from '../../src/gateway/db-roles.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { createTestDatabase, type UpstreamInfo } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';
import { tryTunnel, tunnelClient } from './ws-client.js';

const shared = inject('upstream');
// Roles are cluster-wide: names of this file's own, dropped at the end.
const p = `hg${process.pid}${Math.floor(Math.random() * 1e4)}`;
const SVC = `${p}_svc`;
const ANALYST = `${p}_analysts`;
const DBA = `${p}_dba`;
const STRANGER = `${p}_stranger`; // a role the service role is not a member of
const SVC_PASSWORD = `${SVC}-secret`;

let db: { info: UpstreamInfo; drop(): Promise<void> };
let gw: TestGateway;

async function asSuperuser<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: shared.host, port: shared.port, user: shared.users.trust, database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function connectionAs(name: string, roles: unknown, access = ['analysts', 'dba', 'contractors', 'data-eng']) {
  const base = bankConnection(db.info, { name, access });
  return { ...base, upstream: { ...(base['upstream'] as object), user: SVC, password: SVC_PASSWORD, roles } };
}

beforeAll(async () => {
  db = await createTestDatabase(shared, 'guard');
  await asSuperuser('postgres', (c) => c.query(
    `CREATE ROLE ${SVC} LOGIN NOINHERIT PASSWORD '${SVC_PASSWORD}'; CREATE ROLE ${ANALYST} NOLOGIN; CREATE ROLE ${DBA} NOLOGIN; ` +
    `CREATE ROLE ${STRANGER} NOLOGIN; GRANT ${ANALYST}, ${DBA} TO ${SVC}`,
  ));
  await asSuperuser(db.info.database, (c) => c.query(
    `REVOKE ALL ON SCHEMA public FROM PUBLIC; REVOKE TEMPORARY ON DATABASE ${db.info.database} FROM PUBLIC; ` +
    `GRANT USAGE ON SCHEMA public TO ${ANALYST}, ${DBA}; GRANT CREATE ON SCHEMA public TO ${DBA}; ` +
    `CREATE TABLE customers (id int, name text); INSERT INTO customers VALUES (1, 'Ada'); ` +
    `GRANT SELECT ON customers TO ${ANALYST}; GRANT ALL ON customers TO ${DBA}`,
  ));
  gw = await startTestGateway({
    upstream: db.info,
    apiKeys: [
      { name: 'alice', groups: ['analysts'] },
      { name: 'bob', groups: ['dba'] },
      { name: 'dave', groups: ['contractors'] },
      { name: 'erin', groups: ['dba', 'analysts'] },
      { name: 'frank', groups: ['data-eng'] },
    ],
    connections: [
      connectionAs('bank', { analysts: ANALYST, dba: DBA }),
      connectionAs('templated', `${p}_{group}`),
      connectionAs('misrouted', { analysts: STRANGER }),
    ],
    planner: async (s, { identity, connection }) => guardPlan(s, protectedRolesOf(connection, identity)) ?? RUN,
  });
});

afterAll(async () => {
  await gw?.close();
  await db?.drop();
  await asSuperuser('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${SVC}, ${ANALYST}, ${DBA}, ${STRANGER}`));
});

const whoami = async (c: pg.Client) => (await c.query<{ current_user: string; session_user: string }>('SELECT current_user, session_user')).rows[0]!;

describe('role mapping', () => {
  test('a session runs as the mapped role, and RESET ROLE / RESET ALL / DISCARD ALL / SET SESSION AUTHORIZATION DEFAULT keep it', async () => {
    const c = await tunnelClient(gw.url, 'bank', gw.keys['alice']!);
    expect(await whoami(c)).toEqual({ current_user: ANALYST, session_user: SVC });
    for (const reset of ['RESET ROLE', 'RESET ALL', 'DISCARD ALL', 'SET SESSION AUTHORIZATION DEFAULT', 'RESET SESSION AUTHORIZATION']) {
      await c.query(reset);
      expect((await whoami(c)).current_user, reset).toBe(ANALYST);
    }
    // The database's own privileges apply per group: analysts read, they do not write.
    expect((await c.query('SELECT name FROM customers')).rows).toEqual([{ name: 'Ada' }]);
    await expect(c.query(`INSERT INTO customers VALUES (2, 'Eve')`)).rejects.toMatchObject({ code: '42501' });
    await c.end();
    const d = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    expect((await whoami(d)).current_user).toBe(DBA);
    await d.end();
  });

  test('the map decides in its own order; a template takes the caller\'s first group that makes a role', async () => {
    const both = await tunnelClient(gw.url, 'bank', gw.keys['erin']!); // groups [dba, analysts]; the map lists analysts first
    expect((await whoami(both)).current_user).toBe(ANALYST);
    await both.end();
    const templated = await tunnelClient(gw.url, 'templated', gw.keys['erin']!);
    expect((await whoami(templated)).current_user).toBe(DBA);
    await templated.end();
  });

  test('a caller with no mapped group is refused before the session starts (403, access.denied)', async () => {
    const r = await tryTunnel(gw.url, 'bank', gw.keys['dave']);
    expect(r.status).toBe(403);
    expect(r.body.error).toMatchObject({ code: 'HOOP_FORBIDDEN', message: 'no database role is mapped for your groups on connection bank (upstream.roles maps the groups: analysts, dba)' });
    // A template: no group of frank's makes a valid role name (data-eng has a dash).
    await expect(tunnelClient(gw.url, 'templated', gw.keys['frank']!)).rejects.toThrow(
      `no database role is mapped for your groups on connection templated (upstream.roles is ${p}_{group}, and none of the groups makes a valid role name)`,
    );
    await until(async () => (await gw.store.readEvents({})).find((e) => e.type === 'access.denied' && e.data['stage'] === 'database_role' && e.connection === 'bank'), { what: 'access.denied for dave' });
    expect((await gw.store.readEvents({})).some((e) => e.type === 'session.start' && e.actor?.subject === 'apikey:dave')).toBe(false);
  });

  test('a mapped role the service role is not a member of: a FATAL that says so, the server\'s words in the record', async () => {
    await expect(tunnelClient(gw.url, 'misrouted', gw.keys['alice']!)).rejects.toThrow(
      `hoop: the database refused the role ${STRANGER} that this connection maps your groups to (SQLSTATE 42501); an administrator can find the cause in the gateway's log`,
    );
    const end = await until(async () => (await gw.store.readEvents({})).find((e) => e.type === 'session.end' && e.connection === 'misrouted'), { what: 'session.end' });
    expect(JSON.stringify(end.data)).toContain(`permission denied to set role \\"${STRANGER}\\"`);
    // A template's role that does not exist in the database: the same, with the server's SQLSTATE.
    await expect(tunnelClient(gw.url, 'templated', gw.keys['dave']!)).rejects.toThrow(`hoop: the database refused the role ${p}_contractors that this connection maps your groups to (SQLSTATE 22023)`);
  });
});

describe('the guard, with role mapping, on a real PostgreSQL', () => {
  test('ALTER ROLE CURRENT_USER PASSWORD is refused; the credential still works for a new session', async () => {
    const c = await tunnelClient(gw.url, 'bank', gw.keys['alice']!);
    const verifier = 'SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$S0tM3r2dk8P3b5Ry9SnDs8ZQ2UZKxFjyzSJ5DJh6zXk=:Xz7jVZyUQJZCb4tqmcDP0DxuYbjE1WL0Pf8WgcBvxb4=';
    await expect(c.query(`ALTER ROLE CURRENT_USER PASSWORD '${verifier}'`)).rejects.toMatchObject({
      code: '42501', message: 'hoop: statement refused: ALTER ROLE: it would change a database role every user of this connection shares',
    });
    await expect(c.query(`ALTER ROLE ${SVC} PASSWORD '${verifier}'`)).rejects.toMatchObject({ code: '42501' });
    await c.end();
    const again = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    expect((await again.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await again.end();
  });

  test('SET ROLE NONE, set_config(\'role\', …), ALTER ROLE … SET and DO blocks are refused; the session keeps its role and goes on', async () => {
    const c = await tunnelClient(gw.url, 'bank', gw.keys['alice']!);
    for (const text of [
      'SET ROLE NONE',
      `SET ROLE ${DBA}`,
      `SELECT set_config('role', '${SVC}', false)`,
      'ALTER ROLE CURRENT_USER SET search_path = x',
      'DO $$ BEGIN SET ROLE NONE; END $$',
      `DO $$ BEGIN EXECUTE 'SET ROLE NONE'; END $$`,
      // A builtin that runs a query given as text (it ran it: the role became the service's).
      `SELECT query_to_xml('SELECT set_config(''role'', ''${SVC}'', false)', true, false, '')`,
      `SELECT ts_stat('SELECT set_config(''role'', ''${DBA}'', false)::tsvector')`,
    ]) {
      await expect(c.query(text), text).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/^hoop: statement refused: .*every user of this connection shares/) });
      expect((await whoami(c)).current_user, text).toBe(ANALYST);
    }
    // The extended protocol is guarded at Parse as well.
    await expect(c.query({ text: `SELECT set_config($1, $2, false)`, values: ['role', SVC] })).rejects.toMatchObject({ code: '42501' });
    expect((await whoami(c)).current_user).toBe(ANALYST);
    await c.end();
    const settings = await asSuperuser(db.info.database, (s) => s.query(`SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1`, [ANALYST]));
    expect(settings.rows).toEqual([]);
  });

  test('a function defined through hoop is guarded like a DO block: its body would run later, for whoever calls it', async () => {
    // bob's mapped role may create functions in public (the database allows it): the guard checks the body.
    const c = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    try {
      for (const text of [
        `CREATE FUNCTION public.lift() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SET ROLE NONE'; END $$`,
        `CREATE FUNCTION public.lift() RETURNS text LANGUAGE sql AS $$ SELECT set_config('role', '${SVC}', false) $$`,
        `CREATE PROCEDURE public.lift() LANGUAGE sql AS $$ ALTER ROLE ${SVC} PASSWORD 'x' $$`,
      ]) await expect(c.query(text), text).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/^hoop: statement refused: a function body with .*every user of this connection shares/) });
      // The oracle: nothing of it reached the database.
      expect((await asSuperuser(db.info.database, (s) => s.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'lift'"))).rows).toEqual([{ n: 0 }]);
      // An ordinary function is created and runs as the caller's own role.
      await c.query('CREATE FUNCTION public.twice(x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 2 * x; END $$');
      expect((await c.query('SELECT public.twice(21) AS v, current_user AS u')).rows).toEqual([{ v: 42, u: DBA }]);
      await c.query('DROP FUNCTION public.twice(int)');
    } finally {
      await c.end();
    }
  });

  test('an aggregate, operator or cast made of set_config or a signal function is refused: it would call it under another name', async () => {
    const c = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    try {
      for (const text of [
        // then `SELECT public.lift('${SVC}', false)` would be set_config('role', '${SVC}', false)
        "CREATE AGGREGATE public.lift(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'role')",
        'CREATE OPERATOR public.!!! (LEFTARG = int, RIGHTARG = bigint, FUNCTION = pg_terminate_backend)',
      ]) await expect(c.query(text), text).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/^hoop: statement refused: an (aggregate|operator) that calls (set_config|pg_terminate_backend)/) });
      const made = await asSuperuser(db.info.database, (s) => s.query("SELECT (SELECT count(*) FROM pg_proc WHERE proname = 'lift')::int AS aggregates, (SELECT count(*) FROM pg_operator WHERE oprname = '!!!')::int AS operators"));
      expect(made.rows).toEqual([{ aggregates: 0, operators: 0 }]);
      await c.query("CREATE AGGREGATE public.joined(text) (SFUNC = textcat, STYPE = text, INITCOND = '')");
      expect((await c.query("SELECT public.joined(x) AS v, current_user AS u FROM (VALUES ('a'), ('b')) t(x)")).rows).toEqual([{ v: 'ab', u: DBA }]);
      await c.query('DROP AGGREGATE public.joined(text)');
    } finally {
      await c.end();
    }
  });

  test('pg_terminate_backend of another user\'s session is refused, and that session keeps working', async () => {
    const bob = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    const pid = (await bob.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const alice = await tunnelClient(gw.url, 'bank', gw.keys['alice']!);
    for (const text of [`SELECT pg_terminate_backend(${pid})`, `SELECT pg_catalog.pg_cancel_backend(${pid})`]) {
      await expect(alice.query(text), text).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('it would signal another session') });
    }
    expect((await bob.query('SELECT 2 AS still')).rows).toEqual([{ still: 2 }]);
    await alice.end();
    await bob.end();
  });

  test('another group\'s statement text is hidden in pg_stat_activity', async () => {
    const bob = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    const secret = `SELECT 'bob-secret-${p}' AS marker`;
    await bob.query(secret);
    const pid = (await bob.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    // The superuser sees bob's last statement, so the row is there to hide.
    await asSuperuser('postgres', async (s) => {
      expect((await s.query('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.query).toBe('SELECT pg_backend_pid() AS pid');
    });
    const alice = await tunnelClient(gw.url, 'bank', gw.keys['alice']!);
    expect((await alice.query('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid])).rows).toEqual([{ query: '<insufficient privilege>' }]);
    await alice.end();
    await bob.end();
  });

  test('behind the guard, the database itself refuses the mapped role what the guard cannot see', async () => {
    // A direct login as the service role with the analysts' startup role: no gateway, no guard.
    const other = new pg.Client({ host: shared.host, port: shared.port, user: SVC, password: SVC_PASSWORD, database: db.info.database });
    await other.connect();
    const pid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const c = new pg.Client({ host: shared.host, port: shared.port, user: SVC, password: SVC_PASSWORD, database: db.info.database, options: `-c role=${ANALYST}` });
    await c.connect();
    try {
      await expect(c.query(`SELECT pg_terminate_backend(${pid})`)).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('CREATE FUNCTION escape() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('CREATE FUNCTION pg_temp.escape() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$')).rejects.toMatchObject({ code: '42501' });
      expect((await other.query('SELECT 1 AS alive')).rows).toEqual([{ alive: 1 }]);
    } finally {
      await c.end();
      await other.end();
    }
  });
});
