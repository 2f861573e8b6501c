import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runDemo, type RunningDemo } from '../../src/demo/demo.js';
import { completeDeviceLogin } from './browser.js';
import { assertBuilt, hoop, hoopRun } from './cli.js';

let demo: RunningDemo;
let banner = '';
let home: string;

beforeAll(async () => {
  assertBuilt();
  const out = new PassThrough();
  out.setEncoding('utf8').on('data', (s: string) => (banner += s));
  demo = await runDemo({ port: 0, out });
  home = mkdtempSync(join(tmpdir(), 'hoop-demo-login-'));
});
afterAll(async () => {
  await demo?.stop();
  rmSync(home, { recursive: true, force: true });
});

it('hoop demo: the banner tells how to log in, and bob logs in through the embedded provider', async () => {
  expect(banner).toContain(`hoop login --gateway ${demo.url}`);
  for (const u of demo.idp.users) expect(banner).toMatch(new RegExp(`${u.username} +password ${u.password}  \\(groups: ${u.groups.join(', ')}\\)`));
  const env = { HOME: home, XDG_CONFIG_HOME: join(home, 'cfg'), HOOP_KEYRING: 'file' };
  const run = hoop(['login', '--gateway', demo.url, '--no-browser'], env);
  const [, url] = await run.waitForStderr(/To sign in, open (\S+)/);
  const [, code] = await run.waitForStderr(/enter the code: (\S+)/);
  await completeDeviceLogin(url!, code!, demo.idp.users.find((u) => u.username === 'bob')!);
  expect(await run.exit).toBe(0);
  expect(run.stderr()).toContain(`Logged in to ${demo.url} as bob@bank.example (groups: dba)`);
  const list = await hoopRun(['connections', '--json'], env);
  expect(list.code).toBe(0);
  expect(JSON.parse(list.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'bank', allowed: true })]));
});
