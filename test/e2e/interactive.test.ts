/**
 * psql as a person uses it: interactive, on a terminal (a pseudo-terminal from `script`), typing
 * statements and pressing Ctrl-C, through the real tunnel.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { openLocalTunnel, type LocalTunnel } from '../../src/client/tunnel.js';
import { clientEnv } from '../helpers/clients.js';
import { startTestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { untilRunning } from '../helpers/postgres.js';

const upstream = inject('upstream');
const SLEEP = 'select pg_sleep(30) as terminal_ctrl_c;';
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let tunnel: LocalTunnel;

beforeAll(async () => {
  gateway = await startTestGateway({ upstream });
  tunnel = await openLocalTunnel({ gateway: gateway.url, connection: 'bank', token: async () => gateway.keys['alice']!, port: 0, user: 'alice', database: upstream.database });
});

afterAll(async () => {
  await tunnel?.close();
  await gateway?.close();
});

test('interactive psql on a terminal: queries, an error, Ctrl-C cancelling pg_sleep, \\q', async () => {
  // `script` gives psql a real pseudo-terminal, so it runs interactively and reads Ctrl-C from it.
  // `exec` leaves no shell between them: a non-interactive dash would die of the Ctrl-C's SIGINT
  // and `script` would report 130 while psql carried on.
  const child = spawn('script', ['-qfec', `exec psql -X '${tunnel.uri}'`, '/dev/null'], {
    env: clientEnv({ SHELL: '/bin/sh', PAGER: 'cat', TERM: 'dumb', COLUMNS: '120' }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let screen = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (screen += d));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  const waitFor = (pattern: RegExp, from: number) =>
    until(() => pattern.test(screen.slice(from)), { timeoutMs: 10_000, intervalMs: 50, what: () => `${pattern} (the terminal shows:\n${screen})` });
  const type = async (keys: string, expected: RegExp) => {
    const from = screen.length;
    child.stdin!.write(keys);
    await waitFor(expected, from);
  };
  try {
    await waitFor(/=# $|=> $/m, 0);
    await type("select 'vault' || 42 as answer;\r", /vault42[\s\S]*\(1 row\)/);
    await type('select 1/0;\r', /ERROR: {2}division by zero/);
    await type(`${SLEEP}\r`, /pg_sleep\(30\)/);
    await untilRunning(upstream, SLEEP); // Ctrl-C before the statement reaches PostgreSQL cancels nothing
    await type('\x03', /canceling statement due to user request/);
    await type('select count(*) from pg_class where relname = $$pg_class$$;\r', /\n\s*1\s*\r?\n[\s\S]*\(1 row\)/);
    child.stdin!.write('\\q\r');
    expect(await closed).toBe(0);
  } finally {
    child.kill('SIGKILL');
  }
  const events = await gateway.store.readEvents({});
  const statements = events.filter((e) => e.type === 'query.start').map((e) => e.data['statement']);
  expect(statements).toContain(SLEEP);
  const sleepEnd = events.find((e) => e.type === 'query.end' && e.data['outcome'] === 'cancelled');
  expect(sleepEnd).toBeDefined();
}, 60_000);
