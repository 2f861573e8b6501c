/**
 * `hoop reviews`, `hoop review approve|deny` and `hoop request` as whole processes
 * (`node bin/hoop.js`, built) in a temporary HOME, against an in-process gateway.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ApprovalRequest } from '../../src/api/types.js';
import type { ApprovalConfig } from '../../src/policy/risk/types.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { BIN, childEnv, runBin, tempHome } from './helpers.js';

const approval: ApprovalConfig = { approvers: ['dba'], minApprovals: 1, timeoutMs: 600_000, grantMaxMs: 8 * 3_600_000, notify: [], rules: [], rowCap: null };

let home: ReturnType<typeof tempHome>;
let gw: TestGateway;

beforeAll(async () => {
  home = tempHome();
  gw = await startTestGateway({
    upstream: inject('upstream'),
    adjustConfig: (c) => ({ ...c, connections: c.connections.map((x) => Object.assign({ ...x }, { approval })) }),
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  home?.cleanup();
});

const as = (who: string) => childEnv({ ...home.env, HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys[who]! });

async function askNoWait(query: string): Promise<string> {
  const r = await runBin(['request', 'bank', '--query', query, '--reason', 'INC-42', '--no-wait'], as('alice'));
  expect(r.code).toBe(8);
  expect(r.stdout).toMatch(/^r-[0-9a-f]{8}\n$/);
  expect(r.stderr).toContain('waits for dba');
  return r.stdout.trim();
}

/** `hoop request` waiting in the background; resolves with how it ended. */
function requestWaiting(query: string) {
  const child = spawn(process.execPath, [BIN, 'request', 'bank', '--query', query, '--reason', 'INC-7'], { env: as('alice'), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  return { child, exited, stderr: () => stderr };
}

async function pendingId(statement: string): Promise<string> {
  const found = await until(async () => (await gw.store.listApprovalRequests({ status: ['pending'] })).find((r) => r.statement === statement), { timeoutMs: 10_000, what: `a pending request for ${statement}` });
  return found.id;
}

describe('hoop reviews / review / request', () => {
  it('--no-wait prints the id and exits 8; reviewers list it (table and --json); the requester is refused with exit 5', async () => {
    const id = await askNoWait('DELETE FROM accounts WHERE id = 1');
    const json = await runBin(['reviews', '--json'], as('bob'));
    expect(json.code).toBe(0);
    const list = JSON.parse(json.stdout) as ApprovalRequest[];
    expect(list.find((r) => r.id === id)).toMatchObject({
      id, connection: 'bank', requester: { subject: 'apikey:alice' }, statement: 'DELETE FROM accounts WHERE id = 1', parameters: [], rule: null,
      status: 'pending', created_at: expect.any(String), expires_at: expect.any(String), approvals: [],
    });
    const table = await runBin(['reviews'], as('bob'));
    expect(table.stdout.split('\n').find((l) => l.startsWith(id))?.split('\t')).toEqual([id, expect.any(String), 'bank', 'apikey:alice', 'ahead of time', 'DELETE FROM accounts WHERE id = 1', 'pending', 'INC-42']);
    expect((await runBin(['reviews'], as('alice'))).stderr).toContain('No requests wait for your decision.');

    const self = await runBin(['review', 'approve', id], as('alice'));
    expect(self.code).toBe(5);
    expect(self.stderr.split('\n')[0]).toBe(`hoop: you may not decide your own request ${id}`);
    const notApprover = await runBin(['review', 'approve', id], as('carol'));
    expect(notApprover.code).toBe(5);
    expect(notApprover.stderr).toContain(`you are not an approver of request ${id} (approvers: dba)`);
    const noComment = await runBin(['review', 'deny', id], as('bob'));
    expect(noComment.code).toBe(2);
    expect((await runBin(['review', 'approve', 'r-xyz'], as('bob'))).code).toBe(2);

    const ok = await runBin(['review', 'approve', id, '--comment', 'fine'], as('bob'));
    expect(ok).toMatchObject({ code: 0, stdout: '' });
    expect(ok.stderr).toContain(`Approved ${id}`);
    const all = JSON.parse((await runBin(['reviews', '--all', '--json'], as('alice'))).stdout) as ApprovalRequest[];
    expect(all.find((r) => r.id === id)).toMatchObject({ status: 'approved', approvals: [{ approver: 'apikey:bob', comment: 'fine' }] });
  });

  it('waits until approved (exit 0), or denied (exit 6 with the approver and comment)', async () => {
    const approved = requestWaiting('SELECT * FROM customers');
    const a = await pendingId('SELECT * FROM customers');
    expect((await runBin(['review', 'approve', a], as('bob'))).code).toBe(0);
    const done = await approved.exited;
    expect(done.code).toBe(0);
    expect(done.stdout).toBe('');
    expect(done.stderr).toContain(`Request ${a} approved by apikey:bob`);
    expect(done.stderr).toContain(`Waiting for approval of ${a}`); // once: stderr is not a terminal

    const denied = requestWaiting('SELECT * FROM accounts');
    const d = await pendingId('SELECT * FROM accounts');
    expect((await runBin(['review', 'deny', d, '--comment', 'add a WHERE'], as('bob'))).code).toBe(0);
    const no = await denied.exited;
    expect(no.code).toBe(6);
    expect(no.stderr).toContain(`hoop: request ${d} was denied by apikey:bob (add a WHERE)`);
  });

  it('Ctrl-C while waiting exits 8 and leaves the request pending', async () => {
    const waiting = requestWaiting('SELECT count(*) FROM customers');
    const id = await pendingId('SELECT count(*) FROM customers');
    await until(() => waiting.stderr().includes('Waiting for approval'), { timeoutMs: 10_000, what: 'hoop request waiting' });
    waiting.child.kill('SIGINT');
    const r = await waiting.exited;
    expect(r.code).toBe(8);
    expect(r.stderr).toContain(`Request ${id} is still pending`);
    expect(await gw.store.getApprovalRequest(id)).toMatchObject({ status: 'pending' });
  });
});
