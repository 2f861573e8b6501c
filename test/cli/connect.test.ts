/**
 * `hoop connect` in memory against a real gateway and the real local tunnel, driven by the `pg`
 * driver. The runtime's shutdown signal stands in for Ctrl-C.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until as poll } from '../helpers/poll.js';
import { testRuntime, runHoop } from './helpers.js';

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway({ upstream: inject('upstream') });
}, 60_000);

afterAll(async () => {
  await gw?.close();
});

/** The output `what` once `probe` finds it there. */
const until = <T>(what: string, probe: () => T | undefined) => poll(probe, { what, timeoutMs: 15_000, intervalMs: 20 });

async function query(uri: string, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: uri });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('hoop connect', () => {
  it('--json: one JSON line; queries run through it; each client is reported; shutdown closes it with exit 0', async () => {
    const env: Record<string, string> = { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! };
    const t = testRuntime({ env });
    const exit = runCli(['connect', 'bank', '--port', '0', '--json', '--reason', 'INC-42: failed transfers'], t.runtime);
    const line = await until('the JSON line', () => (t.stdout().includes('\n') ? t.stdout() : undefined));
    expect(line.split('\n')).toHaveLength(2);
    const info = JSON.parse(line) as { uri: string; user: string; port: number; password: string };
    expect(info.user).toBe('alice');
    expect(info.uri).toContain(`:${info.port}/`);

    expect(await query(info.uri, "SELECT 6 * 7 AS answer, current_setting('application_name') AS app")).toEqual([{ answer: 42, app: '' }]);
    await until('the close event', () => (/ - client .* disconnected/.test(t.stderr()) ? true : undefined));
    // Each client's line names its recorded session, as `hoop sessions show` takes it.
    const [, shortId] = /^\d\d:\d\d:\d\d \+ client 127\.0\.0\.1:\d+ connected to bank \(session ([0-9a-f]{8})\)$/m.exec(t.stderr()) ?? [];
    expect(shortId).toBeDefined();
    expect(t.stderr()).toMatch(new RegExp(`- client 127\\.0\\.0\\.1:\\d+ disconnected \\(session ${shortId}\\)$`, 'm'));
    expect((await gw.store.listSessions({ idPrefix: shortId! })).map((s) => s.connection)).toEqual(['bank']);

    // The token is asked for per client connection: a revoked one refuses the next client only.
    env.HOOP_TOKEN = 'hoop_revoked';
    await expect(query(info.uri, 'SELECT 1')).rejects.toThrow(/hoop/);
    await until('the refusal event', () => (/ refused: /.test(t.stderr()) ? true : undefined));

    t.shutdown('SIGINT');
    expect(await exit).toBe(0);
    expect(t.stdout()).toBe(line); // nothing but the one JSON line on stdout
    await expect(query(info.uri, 'SELECT 1')).rejects.toThrow(/ECONNREFUSED/);

    // The session is recorded with the reason, and `sessions show` says so.
    const sessions = await runHoop(['sessions', '--json'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! } });
    const [latest] = JSON.parse(sessions.stdout) as { id: string }[];
    const shown = await runHoop(['sessions', 'show', latest!.id], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! } });
    expect(shown.stdout).toContain('Reason:     INC-42: failed transfers');
    expect(shown.stdout).toContain("SELECT 6 * 7 AS answer, current_setting('application_name') AS app");
    expect(shown.stdout).toMatch(/│ answer │ app\s*│/);
  });

  it('on a terminal: a human block on stderr with the psql example, nothing on stdout', async () => {
    const t = testRuntime({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.bob!, NO_COLOR: '1' }, tty: true });
    const exit = runCli(['connect', 'bank', '--port', '0'], t.runtime);
    const uri = await until('the psql example', () => /psql "(postgresql:\/\/[^"]+)"/.exec(t.stderr())?.[1]);
    expect(t.stderr()).toContain(`✓ Tunnel to bank (database hoop_test) via ${gw.url}`);
    expect(t.stderr()).toContain('Press Ctrl-C to close the tunnel.');
    expect(await query(uri, 'SELECT current_database() AS db')).toEqual([{ db: 'hoop_test' }]);
    t.shutdown('SIGTERM');
    expect(await exit).toBe(0);
    expect(t.stdout()).toBe('');
    expect(t.stderr()).toContain('Closing the tunnel (SIGTERM)...\nTunnel closed.\n');
  });

  it('into a pipe: the URI alone on stdout', async () => {
    const t = testRuntime({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! } });
    const exit = runCli(['connect', 'bank', '--port', '0'], t.runtime);
    const out = await until('the URI', () => (t.stdout().endsWith('\n') ? t.stdout() : undefined));
    expect(out).toMatch(/^postgresql:\/\/alice:[^@]{24,}@127\.0\.0\.1:\d+\/hoop_test\S*\n$/);
    t.shutdown();
    expect(await exit).toBe(0);
  });

  it('a port in use is one clear line (exit 1)', async () => {
    const first = testRuntime({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! } });
    const exit = runCli(['connect', 'bank', '--port', '0', '--json'], first.runtime);
    const { port } = JSON.parse(await until('the JSON line', () => (first.stdout().includes('\n') ? first.stdout() : undefined))) as { port: number };
    const second = await runHoop(['connect', 'bank', '--port', String(port)], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! } });
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`hoop: port ${port} on 127.0.0.1 is already in use\nPass --port with another port, or --port 0 for any free one.\n`);
    first.shutdown();
    expect(await exit).toBe(0);
  });
});
