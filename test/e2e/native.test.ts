/**
 * The one-hop path: the gateway's own PostgreSQL listener (`postgres_listen`), driven by the real
 * psql (sslmode=verify-full against the gateway's certificate), pgbench and the `pg` driver,
 * with an API key as the password. The oracle for what ran is PostgreSQL's own statement log
 * (server-log.ts); refusals are checked in what the client is told and in the record.
 *
 * The listener binds every interface, so the same gateway is reached from loopback (127.0.0.1)
 * and from this machine's own non-loopback address (a peer that is not loopback: plaintext is
 * refused there).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { LOGIN_FAILURE_BURST } from '../../src/gateway/native-listener.js';
import { collect, clientEnv, runClient, type ClientResult } from '../helpers/clients.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { untilRunning } from '../helpers/postgres.js';
import { pairStatements, recordOf, ruleViolations, brief } from '../helpers/record.js';
import { startLoggedCluster, type LoggedCluster } from '../helpers/server-log.js';
import { makeCertificates } from '../helpers/tls.js';
import { rawTunnel, type RawClient } from '../helpers/raw-client.js';
import { newSigningKey, startDemoIdp, type DemoIdp } from '../../src/identity/demo-idp.js';
import { SignJWT, importJWK, type JWK, type JWTPayload } from 'jose';

let pgc: LoggedCluster;
let idp: DemoIdp;
let signingKey: JWK;
let gw: TestGateway;
let dir: string;
let caFile: string;
let ca: string;
let port: number;
/** This machine's own address on a non-loopback interface. */
let outside: string;

const MASKING = {
  columns: [{ column: 'bank.customers.ssn', type: 'ssn', method: 'partial', keep: 4 }],
  detectors: [],
  exempt: ['dba'],
};

function nonLoopbackAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') return a.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address to test a non-loopback peer with');
}

beforeAll(async () => {
  outside = nonLoopbackAddress();
  pgc = await startLoggedCluster('hoop-native-pg');
  await pgc.sql(`
    CREATE SCHEMA bank;
    CREATE TABLE bank.customers (id int PRIMARY KEY, full_name text, ssn text);
    INSERT INTO bank.customers VALUES (1, 'Ada', '123-45-6789'), (2, 'Bo', '987-65-4321');
  `);
  signingKey = await newSigningKey('RS256');
  idp = await startDemoIdp({ signingKeys: [signingKey] });
  const certs = makeCertificates();
  dir = mkdtempSync(join(tmpdir(), 'hoop-native-'));
  caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, certs.ca);
  ca = certs.ca;
  gw = await startTestGateway({
    upstream: pgc.info,
    connections: [
      bankConnection(pgc.info, { masking: MASKING }),
      bankConnection(pgc.info, { name: 'audited', require_reason: true }),
      bankConnection(pgc.info, { name: 'limited', max_sessions_per_user: 1, access: ['analysts', 'etl'] }),
      bankConnection(pgc.info, {
        name: 'held',
        approval: { approvers: ['dba'], rules: [{ name: 'full-export', when: { kind: ['select'], tables: ['customers'], where: false }, action: 'require_approval' }] },
      }),
    ],
    oidc: { issuer: idp.issuer, client_id: idp.clientId, audience: idp.audience, groups_claim: 'groups' },
    config: { tls: { cert: certs.cert, key: certs.key }, postgres_listen: '0.0.0.0:0' },
  });
  port = gw.postgresListen!.port;
});

afterAll(async () => {
  await gw?.close();
  await idp?.close();
  await pgc?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A libpq URI for the native listener. */
function uri(o: { user: string; database?: string; host?: string; sslmode?: string; application: string }): string {
  const host = o.host ?? '127.0.0.1';
  const ssl = o.sslmode ?? 'verify-full';
  const root = ssl === 'verify-full' ? `&sslrootcert=${encodeURIComponent(caFile)}` : '';
  return `postgresql://${encodeURIComponent(o.user)}@${host}:${port}/${o.database ?? 'bank'}?sslmode=${ssl}${root}&application_name=${o.application}`;
}

/** psql against the native listener, the key in PGPASSWORD (as a job would give it). */
function psqlNative(target: string, key: string, sql: string, env: Record<string, string> = {}): Promise<ClientResult> {
  return runClient('psql', ['-X', '-w', '-At', '-v', 'ON_ERROR_STOP=1', '-d', target, '-c', sql], { env: { PGPASSWORD: key, ...env } });
}

async function eventsOf(type: string, match: (e: AuditEvent) => boolean): Promise<AuditEvent[]> {
  return (await gw.store.readEvents({ types: [type], limit: 1000 })).filter(match);
}

async function sessionOf(application: string): Promise<AuditEvent> {
  return until(async () => (await eventsOf('session.start', (e) => e.source?.application === application))[0], { what: `session.start of ${application}` });
}

describe('psql over TLS (verify-full against the gateway certificate)', () => {
  test('runs as the API key\'s identity, masks, records path "native", and the record matches the server log', async () => {
    const app = 'native-psql';
    const r = await psqlNative(uri({ user: 'alice', application: app }), gw.keys['alice']!, 'select full_name, ssn from bank.customers order by id');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // alice (analysts) is not exempt: the SSN comes back masked, through the native path too.
    expect(r.stdout.trim().split('\n')).toEqual(['Ada|***-**-6789', 'Bo|***-**-4321']);

    const start = await sessionOf(app);
    expect(start.actor?.subject).toBe('apikey:alice');
    expect(start.connection).toBe('bank');
    expect(start.data).toMatchObject({ path: 'native', tls: 'TLSv1.3', user: 'alice', requested_database: 'bank' });
    expect(start.source?.address).toBe('127.0.0.1');

    const record = await recordOf(gw.store, start.session_id!, { ended: true });
    const statements = pairStatements(record.events);
    await pgc.flushLog();
    const logged = pgc.log.statements(app);
    expect(ruleViolations(statements, logged), JSON.stringify(brief(statements))).toEqual([]);
    const select = statements.find((s) => s.statement.startsWith('select full_name'))!;
    expect(select.outcome).toBe('ok');
    expect(select.e?.['masked']).toBeTruthy();
  });

  test('the user name must name the key\'s identity, else FATAL 28000 and access.denied', async () => {
    const r = await psqlNative(uri({ user: 'bob', application: 'native-wrong-user' }), gw.keys['alice']!, 'select 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('the user name "bob" does not name the identity the password belongs to; connect as "alice"');
    const denied = await until(async () => (await eventsOf('access.denied', (e) => e.data['stage'] === 'user'))[0]);
    expect(denied.actor?.subject).toBe('apikey:alice');
    expect(denied.data).toMatchObject({ via: 'native', user: 'bob' });
    // nothing ran: no session was opened for it
    expect(await eventsOf('session.start', (e) => e.source?.application === 'native-wrong-user')).toEqual([]);
  });

  test('a bad token is refused with 28P01 and recorded as auth.failed, never the token', async () => {
    const bad = 'hoop_not-a-real-key-0123456789';
    const r = await psqlNative(uri({ user: 'alice', application: 'native-bad-key' }), bad, 'select 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/password authentication failed for user "alice": unknown API key/);
    const failed = await until(async () => (await eventsOf('auth.failed', (e) => e.data['via'] === 'native' && e.data['stage'] === 'authenticate'))[0]);
    expect(failed.data).toMatchObject({ user: 'alice', code: 'HOOP_AUTH_REJECTED' });
    expect(JSON.stringify(failed)).not.toContain(bad);
  });

  test('require_reason: refused without one (saying how), admitted with options=-c hoop.reason=…', async () => {
    const target = uri({ user: 'alice', database: 'audited', application: 'native-reason' });
    const refused = await psqlNative(target, gw.keys['alice']!, 'select 1');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('hoop.reason');
    const ok = await psqlNative(target, gw.keys['alice']!, 'select 41 + 1', { PGOPTIONS: '-c hoop.reason=INC-7\\ check\\ transfers' });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('42');
    const start = await sessionOf('native-reason');
    expect(start.data['reason']).toBe('INC-7 check transfers');
  });

  test('Ctrl-C in psql cancels the statement upstream through the listener', async () => {
    const sql = 'select pg_sleep(60) as native_cancel';
    const child = spawn('psql', ['-X', '-w', '-At', '-d', uri({ user: 'bob', application: 'native-cancel' }), '-c', sql], {
      env: clientEnv({ PGPASSWORD: gw.keys['bob']! }), stdio: ['ignore', 'pipe', 'pipe'],
    });
    const done = collect(child, 30_000);
    await untilRunning(pgc.info, sql);
    child.kill('SIGINT'); // psql sends a CancelRequest on a new connection (libpq: without TLS)
    const r = await done;
    expect(r.stderr).toContain('canceling statement due to user request');
    const start = await sessionOf('native-cancel');
    const record = await recordOf(gw.store, start.session_id!, { ended: true });
    expect(pairStatements(record.events).find((s) => s.statement === sql)?.outcome).toBe('cancelled');
  });
});

describe('drivers and tools', () => {
  test('the pg driver (TLS verified against the CA), extended protocol with parameters', async () => {
    const client = new pg.Client({
      host: '127.0.0.1', port, user: 'bob', password: gw.keys['bob']!, database: 'bank', application_name: 'native-pg',
      ssl: { ca: [ca] },
    });
    await client.connect();
    try {
      const res = await client.query('select ssn from bank.customers where id = $1', [1]);
      expect(res.rows).toEqual([{ ssn: '123-45-6789' }]); // bob (dba) is exempt from masking
    } finally {
      await client.end();
    }
    const start = await sessionOf('native-pg');
    const record = await recordOf(gw.store, start.session_id!, { ended: true });
    const s = pairStatements(record.events).find((x) => x.statement.startsWith('select ssn'))!;
    expect(s.s['parameters']).toEqual(['1']);
  });

  test('pgbench -M extended through the listener: every statement recorded', async () => {
    const script = join(dir, 'bench.sql');
    writeFileSync(script, '\\set aid random(1, 2)\nselect full_name from bank.customers where id = :aid;\n');
    const r = await runClient('pgbench', ['-n', '-M', 'extended', '-c', '2', '-j', '1', '-t', '10', '-f', script, uri({ user: 'bob', sslmode: 'require', application: 'native-pgbench' })], {
      env: { PGPASSWORD: gw.keys['bob']! },
    });
    expect(r.stderr).not.toMatch(/error|FATAL/i);
    expect(r.stdout).toContain('number of transactions actually processed: 20/20');
    const ends = await until(async () => {
      const all = await eventsOf('query.end', (e) => e.source?.application === 'native-pgbench' && e.data['outcome'] === 'ok');
      return all.length >= 20 ? all : null;
    }, { what: '20 query.end of pgbench' });
    expect(ends.length).toBe(20);
  });
});

describe('identities and limits', () => {
  /** An access token of the test provider, signed with its key. */
  async function accessToken(claims: JWTPayload): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: idp.issuer, aud: idp.audience, iat: now, exp: now + 300, ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: signingKey.kid!, typ: 'at+jwt' })
      .sign(await importJWK(signingKey, 'RS256'));
  }

  test('an OIDC access token is a password too; the user name is its subject or its email, in any case', async () => {
    const token = await accessToken({ sub: 'oidc|dana', email: 'Dana@Bank.Example', groups: ['etl'] });
    for (const [user, application] of [['oidc|dana', 'native-oidc-sub'], ['dana@bank.example', 'native-oidc-email']] as const) {
      const r = await psqlNative(uri({ user, database: 'limited', application }), token, 'select 5');
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('5');
      expect((await sessionOf(application)).actor).toMatchObject({ subject: 'oidc|dana', email: 'Dana@Bank.Example', auth_method: 'oidc' });
    }
  });

  test('an expired token is refused, saying so', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await accessToken({ sub: 'oidc|dana', groups: ['etl'], iat: now - 3600, exp: now - 600 });
    const r = await psqlNative(uri({ user: 'oidc|dana', database: 'limited', application: 'native-oidc-expired' }), token, 'select 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('password authentication failed for user "oidc|dana": token expired');
    const failed = await until(async () => (await eventsOf('auth.failed', (e) => e.data['via'] === 'native' && e.data['reason'] === 'token expired'))[0]);
    expect(failed.data['user']).toBe('oidc|dana');
  });

  test('a held statement: the client gets the NOTICE, and the rows once an approver approves', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'alice', password: gw.keys['alice']!, database: 'held', application_name: 'native-held', ssl: { ca: [ca] } });
    const notices: string[] = [];
    client.on('notice', (n) => notices.push(n.message ?? ''));
    await client.connect();
    try {
      const result = client.query('select id from bank.customers order by id');
      const notice = await until(() => notices[0], { what: 'the hold NOTICE' });
      const id = /request (r-[0-9a-f]{8})/.exec(notice)?.[1];
      expect(notice).toContain('hoop: approval required (rule full-export)');
      const agent = new Agent({ connect: { ca } });
      try {
        const res = await request(`${gw.url}/api/v1/reviews/${id}/approve`, {
          method: 'POST', dispatcher: agent, headers: { authorization: `Bearer ${gw.keys['bob']!}`, 'content-type': 'application/json' }, body: '{}',
        });
        expect(res.statusCode).toBe(200);
        await res.body.dump();
      } finally {
        await agent.close();
      }
      expect((await result).rows).toEqual([{ id: 1 }, { id: 2 }]);
    } finally {
      await client.end();
    }
  });

  test('max_sessions_per_user counts the tunnel and the native listener together', async () => {
    let tunnel: RawClient | null = null;
    try {
      tunnel = await rawTunnel(gw.url, gw.keys['alice']!, { application: 'native-limit-tunnel', connection: 'limited', ca });
      const r = await psqlNative(uri({ user: 'alice', database: 'limited', application: 'native-limit' }), gw.keys['alice']!, 'select 1');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('apikey:alice already has 1 open session on connection limited, the limit (max_sessions_per_user 1)');
      const denied = await until(async () => (await eventsOf('access.denied', (e) => e.data['stage'] === 'limit'))[0]);
      expect(denied.data).toMatchObject({ via: 'native' });
    } finally {
      tunnel?.destroy();
    }
  });
});

describe('where the listener is', () => {
  test('the connection info names it; a wildcard listen address becomes the host the API was reached at', async () => {
    const agent = new Agent({ connect: { ca } });
    try {
      const res = await request(`${gw.url}/api/v1/connections/bank`, { dispatcher: agent, headers: { authorization: `Bearer ${gw.keys['alice']!}` } });
      const info = (await res.body.json()) as { postgres_listen: unknown };
      expect(info.postgres_listen).toEqual({ host: '127.0.0.1', port, tls: true });
    } finally {
      await agent.close();
    }
  });
});

describe('TLS and the peer', () => {
  test('plaintext from loopback is allowed', async () => {
    const r = await psqlNative(uri({ user: 'bob', sslmode: 'disable', application: 'native-plain-lo' }), gw.keys['bob']!, 'select 7');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('7');
    expect((await sessionOf('native-plain-lo')).data['tls']).toBeNull();
  });

  test('plaintext from a non-loopback peer is refused before any password is asked; TLS from there works', async () => {
    const refused = await psqlNative(uri({ user: 'bob', host: outside, sslmode: 'disable', application: 'native-plain-out' }), gw.keys['bob']!, 'select 1');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('TLS is required: this listener accepts unencrypted connections from loopback only');
    const failed = await until(async () => (await eventsOf('auth.failed', (e) => e.data['stage'] === 'tls'))[0]);
    expect(failed.source).toMatchObject({ address: outside, application: 'native-plain-out' });

    const ok = await psqlNative(uri({ user: 'bob', host: outside, sslmode: 'require', application: 'native-tls-out' }), gw.keys['bob']!, 'select 8');
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('8');
  });

  // Last: it locks the non-loopback address out for the rest of the window.
  test('a flood of failed logins from one address is refused for a while, and recorded once', async () => {
    const target = uri({ user: 'bob', host: outside, sslmode: 'require', application: 'native-flood' });
    for (let i = 0; i < LOGIN_FAILURE_BURST; i++) {
      const r = await psqlNative(target, `hoop_wrong-${i}`, 'select 1');
      expect(r.stderr).toContain('password authentication failed');
    }
    for (let i = 0; i < 3; i++) {
      // Even the right key: the address has used its burst.
      const r = await psqlNative(target, gw.keys['bob']!, 'select 1');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`too many failed logins from ${outside}; try again later`);
    }
    const floods = await until(async () => {
      const all = await eventsOf('auth.failed', (e) => e.data['stage'] === 'rate_limit');
      return all.length > 0 ? all : null;
    });
    expect(floods).toHaveLength(1);
    expect(floods[0]!.source?.address).toBe(outside);
    // loopback is another address: not locked out
    const lo = await psqlNative(uri({ user: 'bob', application: 'native-after-flood' }), gw.keys['bob']!, 'select 9');
    expect(lo.stdout.trim()).toBe('9');
  });
});

