import { inject, test, expect } from 'vitest';
import pg from 'pg';
import { passwordOf } from '../helpers/postgres.js';

const upstream = inject('upstream');

test('the shared upstream accepts each authentication method it advertises', async () => {
  for (const user of [upstream.users.scram, upstream.users.md5, upstream.users.plain, upstream.users.trust]) {
    const client = new pg.Client({ host: upstream.host, port: upstream.port, user, password: passwordOf(user), database: upstream.database });
    await client.connect();
    const { rows } = await client.query('select current_user as u');
    expect(rows[0].u).toBe(user);
    await client.end();
  }
});

test('the TLS-only user is refused without TLS and accepted with a verified certificate', async () => {
  const user = upstream.users.tlsOnly;
  const plain = new pg.Client({ host: upstream.host, port: upstream.port, user, password: passwordOf(user), database: upstream.database });
  await expect(plain.connect()).rejects.toThrow(/pg_hba|rejects|no encryption/);
  const tls = new pg.Client({
    host: upstream.host, port: upstream.port, user, password: passwordOf(user), database: upstream.database,
    ssl: { ca: upstream.ca, servername: 'localhost' },
  });
  await tls.connect();
  const { rows } = await tls.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
  expect(rows[0].ssl).toBe(true);
  await tls.end();
});
