/**
 * `hoop connect` refusals are recorded, `hoop connect` on a require_reason connection says how to
 * give one, `hoop audit events` answers by type (auditors and admins), and `hoop sessions`
 * shows the reason: against a real in-process gateway, through the real commander program.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { runHoop } from './helpers.js';

const upstream = inject('upstream');
let gw: TestGateway;
const as = (who: string) => ({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys[who]! } });

beforeAll(async () => {
  gw = await startTestGateway({ upstream, connections: [bankConnection(upstream), bankConnection(upstream, { name: 'vault', access: ['analysts'], require_reason: true })] });
  await gw.store.appendEvents([{
    id: randomUUID(), time: '2026-11-28T09:00:00.000Z', type: 'session.start', actor: { subject: 'apikey:alice', email: null, groups: ['analysts'], auth_method: 'api_key' },
    source: { address: '127.0.0.1', application: 'psql' }, connection: 'vault', session_id: randomUUID(), data: { user: 'alice', reason: 'INC-42: refunds' },
  }]);
});
afterAll(async () => {
  await gw?.close();
});

describe('refusals through the CLI are recorded', () => {
  it('hoop connect outside the access groups exits 5, and the gateway recorded access.denied', async () => {
    const r = await runHoop(['connect', 'bank'], as('carol'));
    expect(r.code).toBe(5);
    await expect.poll(async () => (await gw.store.readEvents({ types: ['access.denied'] })).some((e) => e.actor?.subject === 'apikey:carol' && e.connection === 'bank' && e.data['stage'] === 'authorize')).toBe(true);
  });

  it('hoop connect without --reason on a require_reason connection exits 5 and says how to give one', async () => {
    const r = await runHoop(['connect', 'vault'], as('alice'));
    expect(r.code).toBe(5);
    expect(r.stderr).toBe('hoop: connection vault requires a reason for every session; give one with: hoop connect vault --reason "…"\n');
    await expect.poll(async () => (await gw.store.readEvents({ types: ['access.denied'] })).some((e) => e.connection === 'vault' && e.data['stage'] === 'reason')).toBe(true);
  });
});

describe('hoop audit events', () => {
  it('lists refusals by type for an auditor, newest first, and the read is recorded', async () => {
    await runHoop(['connections'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: 'hoop_not-a-key' } });
    await expect.poll(async () => (await gw.store.readEvents({ types: ['access.denied', 'auth.failed'] })).length).toBeGreaterThanOrEqual(3);
    const r = await runHoop(['audit', 'events', '--type', 'access.denied,auth.failed', '--since', '24h'], as('carol'));
    expect(r.code).toBe(0);
    const rows = r.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
    expect(rows[0]![1]).toBe('auth.failed');
    expect(rows[0]![5]).toBe('unknown API key (/api/v1/connections)');
    const vault = rows.find((x) => x[3] === 'vault')!;
    expect(vault.slice(1, 5)).toEqual(['access.denied', 'apikey:alice', 'vault', '127.0.0.1']);
    expect(vault[5]).toMatch(/^reason: connection vault requires a reason/);
    const read = (await gw.store.readEvents({ types: ['audit.read'] })).at(-1)!;
    expect(read).toMatchObject({ actor: { subject: 'apikey:carol' }, data: { filter: { types: ['access.denied', 'auth.failed'], limit: 50 } } });
    const json = await runHoop(['audit', 'events', '--type', 'auth.*', '--limit', '1', '--json'], as('root'));
    expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ type: 'auth.failed', hash: expect.stringMatching(/^[0-9a-f]{64}$/) })]);
  });

  it('anyone else exits 5; a bad --type is a usage error', async () => {
    const r = await runHoop(['audit', 'events'], as('alice'));
    expect(r.code).toBe(5);
    expect(r.stderr).toBe('hoop: only admins and auditors may read the audit log\n');
    expect((await runHoop(['audit', 'events', '--type', 'Auth.Failed'], as('carol'))).code).toBe(2);
  });
});

describe('hoop sessions: --user by API key name, and the reason', () => {
  it('alice asking for her own sessions by name is not refused; the reason is in --json and a wide table', async () => {
    const r = await runHoop(['sessions', '--user', 'alice', '--json'], as('alice'));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([expect.objectContaining({ connection: 'vault', reason: 'INC-42: refunds' })]);
    const wide = await runHoop(['sessions', '--no-color'], { ...as('alice'), tty: true, columns: 160, now: new Date('2026-11-28T10:00:00Z') });
    expect(wide.stdout.split('\n')[0]).toMatch(/ REASON$/);
    expect(wide.stdout.split('\n')[1]).toMatch(/INC-42: refunds$/);
    expect((await runHoop(['sessions', '--user', 'bob'], as('alice'))).code).toBe(5);
  });
});
