/**
 * report.html in a real headless Chromium (the system's, never a download), JavaScript off and
 * every request but the page's own file refused: it renders (a screenshot that is not blank),
 * and the numbers it shows agree with summary.csv built from the same events, read back by
 * Python's csv module. One log is recorded by a real gateway (pg driver and psql through the
 * tunnel, masking, a held statement approved through the API, refusals, a failed login); the
 * others are constructed, among them hostile names and statements that must stay text.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inflateSync } from 'node:zlib';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { ReportBuilder, type ReportInput, type ReportOptions } from '../../src/audit/report.js';
import { SUMMARY_CSV_COLUMNS, SUMMARY_CSV_HEADER, StatementSummarizer, summaryCsvLine, type StatementRow } from '../../src/audit/summary.js';
import { verifyEvents } from '../../src/audit/verify.js';
import { openLocalTunnel } from '../../src/client/tunnel.js';
import { psql } from '../helpers/clients.js';
import { apiCall, bankConnection, startTestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, passwordOf } from '../helpers/postgres.js';
import { tryTunnel, tunnelClient } from '../gateway/ws-client.js';
import { EventLog, actor } from './event-log.js';

const CHROMIUM = '/usr/bin/chromium';
let browser: Browser;
const dir = mkdtempSync(join(tmpdir(), 'hoop-report-'));

beforeAll(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Built {
  html: string;
  csv: string;
  file: string;
  checkpoints: number;
}

let built = 0;
/** Events -> summary.csv and report.html, as the export does: one pass, rows to both. */
function build(events: AuditEvent[], over: Partial<ReportInput> = {}, options: ReportOptions = {}, href?: (seq: number) => string | null): Built {
  const summarizer = new StatementSummarizer();
  const report = new ReportBuilder(options);
  let csv = SUMMARY_CSV_HEADER;
  const take = (rows: ReturnType<StatementSummarizer['finish']>) => {
    for (const row of rows) {
      csv += summaryCsvLine(row);
      report.addStatement(row);
    }
  };
  for (const e of events) {
    report.addEvent(e);
    take(summarizer.add(e));
  }
  take(summarizer.finish());
  const v = verifyEvents(events);
  const html = report.render({
    range: { since: events[0]?.time ?? '2026-03-03T00:00:00.000Z', until: events.at(-1)?.time ?? '2026-03-04T00:00:00.000Z' },
    filters: {},
    generated_at: '2026-03-05T10:00:00.000Z',
    generated_by: 'carol@bank.example',
    gateway_version: '0.1.0',
    verification: { ok: v.ok, events: v.events, first_seq: v.first_seq, last_seq: v.last_seq, checkpoints: v.checkpoints, key_ids: v.key_ids, failure: v.failure },
    ...over,
  }, { result: (row) => (row.end_seq === null ? null : href ? href(row.end_seq) : `payloads/${row.end_seq}.json`) });
  const file = join(dir, `report-${built++}.html`);
  writeFileSync(file, html);
  writeFileSync(file.replace(/\.html$/, '.csv'), csv);
  return { html, csv, file, checkpoints: v.checkpoints };
}

interface Opened {
  page: Page;
  requests: string[];
  close(): Promise<void>;
}

/** The page from its file, JavaScript disabled, anything but file: refused (and noted). */
async function open(file: string): Promise<Opened> {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  const requests: string[] = [];
  await context.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
  const page = await context.newPage();
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(file).href);
  return { page, requests, close: () => context.close() };
}

const number = (s: string | null) => Number((s ?? '').replace(/[\s\u202F,]/g, ''));

/** `data-metric` cells keyed by `data-<key>`: {name: {metric: n}}. */
async function metricsBy(page: Page, key: 'user' | 'connection'): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const cell of await page.locator(`td[data-metric][data-${key}]`).all()) {
    const name = (await cell.getAttribute(`data-${key}`))!;
    (out[name] ??= {})[(await cell.getAttribute('data-metric'))!] = number(await cell.textContent());
  }
  return out;
}

/** Python's csv module reads summary.csv: the oracle the page is compared with. */
function csvRecords(csv: string): Record<string, string>[] {
  const out = execFileSync('python3', ['-c', 'import csv,io,json,sys; print(json.dumps(list(csv.DictReader(io.StringIO(sys.stdin.read(), newline="")))))'], { input: csv, encoding: 'utf8' });
  return JSON.parse(out) as Record<string, string>[];
}

/** Per user or connection from summary.csv: statements, rows, bytes, refused. */
function fromCsv(csv: string, key: 'user' | 'connection'): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const r of csvRecords(csv)) {
    const t = (out[r[key]!.replace(/^'/, '')] ??= { statements: 0, rows: 0, bytes: 0, refused: 0 });
    t.statements!++;
    t.rows! += Number(r['rows'] || 0);
    t.bytes! += Number(r['bytes'] || 0);
    if (r['outcome'] === 'refused') t.refused!++;
  }
  return out;
}

function withoutSessions(m: Record<string, Record<string, number>>): Record<string, Record<string, number>> {
  return Object.fromEntries(Object.entries(m).filter(([, t]) => t['statements']! > 0).map(([k, { sessions: _s, ...t }]) => [k, t]));
}

/** The screenshot decodes as a PNG of many colours (not a blank page). */
function pngColours(png: Buffer): { width: number; height: number; distinct: number } {
  expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
  let at = 8;
  let width = 0, height = 0, channels = 4;
  const idat: Buffer[] = [];
  while (at < png.length) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      channels = body[9] === 6 ? 4 : body[9] === 2 ? 3 : 1;
      expect(body[8]).toBe(8);
    }
    if (type === 'IDAT') idat.push(body);
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const colours = new Set<number>();
  let prev = Buffer.alloc(stride);
  // Undo the PNG row filters (RFC 2083 section 6) to sample real pixel colours.
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const row = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels]! : 0, b = prev[i]!, c = i >= channels ? prev[i - channels]! : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = filter === 1 ? a : filter === 2 ? b : filter === 3 ? (a + b) >> 1 : filter === 4 ? (pa <= pb && pa <= pc ? a : pb <= pc ? b : c) : 0;
      row[i] = (row[i]! + pred) & 0xff;
    }
    if (y % 7 === 0) for (let x = 0; x < width; x += 3) colours.add(row.readUIntBE(x * channels, 3));
    prev = row;
  }
  return { width, height, distinct: colours.size };
}

describe('report.html from a real gateway session', () => {
  const shared = inject('upstream');

  test('renders in Chromium without JavaScript or network, and its numbers per user and connection agree with summary.csv', async () => {
    const db = await createTestDatabase(shared, 'report');
    const admin = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.scram, password: passwordOf(db.info.users.scram), database: db.info.database });
    await admin.connect();
    await admin.query("CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text); INSERT INTO customers SELECT i, 'c' || i, '123-45-' || lpad(i::text, 4, '0') FROM generate_series(1, 30) i");
    await admin.end();
    const rules = [
      { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update', 'delete', 'ddl'] }, action: 'deny' },
      { name: 'full-export', when: { kind: ['select'], tables: ['customers'], where: false }, action: 'require_approval' },
    ];
    const gw = await startTestGateway({
      upstream: db.info,
      connections: [
        bankConnection(db.info, { masking: { columns: [{ column: 'public.customers.ssn', type: 'ssn', method: 'partial', keep: 4 }], exempt: ['dba'] }, approval: { approvers: ['dba'], rules } }),
        bankConnection(db.info, { name: 'ledger' }),
      ],
    });
    const tunnels: { close(): Promise<void> }[] = [];
    try {
      // alice (analysts) on bank: masked reads, a refused write, a held full export approved by bob.
      const a = await tunnelClient(gw.url, 'bank', gw.keys['alice']!, { application: 'report-alice' });
      const notices: string[] = [];
      a.on('notice', (n) => notices.push(n.message ?? ''));
      expect((await a.query('SELECT id, ssn FROM customers WHERE id <= $1', [3])).rows).toEqual([1, 2, 3].map((i) => ({ id: i, ssn: expect.stringMatching(new RegExp(`${String(i).padStart(4, '0')}$`)) })));
      await expect(a.query('DELETE FROM customers')).rejects.toMatchObject({ code: '42501' });
      const held = a.query('SELECT * FROM customers');
      const id = await until(() => notices.map((n) => /request (r-[0-9a-f]{8})/.exec(n)?.[1]).find(Boolean), { timeoutMs: 20_000, what: 'the hold notice' });
      expect((await apiCall(gw, 'POST', `/reviews/${id}/approve`, 'bob', { comment: 'INC-7' })).status).toBe(200);
      expect((await held).rows).toHaveLength(30);
      // bob (dba) on ledger with psql: one Query of two statements, then one more.
      const t = await openLocalTunnel({ gateway: gw.url, connection: 'ledger', token: async () => gw.keys['bob']!, port: 0, user: 'bob', database: db.info.database });
      tunnels.push(t);
      expect((await psql(t.uri, ['-c', 'SELECT 1 AS a; SELECT 2 AS b', '-c', "SELECT name FROM customers WHERE id < 6"])).code).toBe(0);
      // carol (audit) may not connect; somebody with a wrong key fails to log in.
      expect((await tryTunnel(gw.url, 'bank', gw.keys['carol']!)).status).toBe(403);
      expect((await tryTunnel(gw.url, 'bank', 'hoop_not-a-key')).status).toBe(401);
      // carol (auditor) reads the log: recorded as audit.read.
      expect((await apiCall(gw, 'GET', '/audit/events?type=access.denied', 'carol')).status).toBe(200);
      await a.end();
      await t.close();
      tunnels.length = 0;
      const events = await until(async () => {
        const all = await gw.store.readEvents({});
        const ends = all.filter((e) => e.type === 'session.end').length;
        const starts = all.filter((e) => e.type === 'session.start').length;
        return starts >= 2 && ends === starts && ['auth.failed', 'access.denied', 'audit.read'].every((type) => all.some((e) => e.type === type)) ? all : null;
      }, { timeoutMs: 20_000, what: 'every session ended and the refusals recorded' });

      const { csv, file, checkpoints } = build(events);
      const { page, requests, close } = await open(file);
      try {
        expect(await page.locator('#verification').getAttribute('data-verification')).toBe('verified');
        await expect(page.locator('#verification .verdict').textContent()).resolves.toBe('VERIFIED');
        // Usually too short a run for the checkpoint interval: the page then says what an unsigned chain cannot show.
        await expect(page.locator('#no-checkpoint').count()).resolves.toBe(checkpoints === 0 ? 1 : 0);
        expect(number(await page.locator('[data-metric="checkpoints"]').textContent())).toBe(checkpoints);
        // Per user and per connection: the page and summary.csv agree, and the numbers are what ran.
        const users = await metricsBy(page, 'user');
        const connections = await metricsBy(page, 'connection');
        expect(withoutSessions(users)).toEqual(fromCsv(csv, 'user'));
        expect(withoutSessions(connections)).toEqual(fromCsv(csv, 'connection'));
        const alice = users['alice@bank.example'] ? 'alice@bank.example' : 'apikey:alice';
        const bob = users['bob@bank.example'] ? 'bob@bank.example' : 'apikey:bob';
        expect(users[alice]).toMatchObject({ sessions: 1, statements: 3, rows: 33, refused: 1 });
        expect(users[bob]).toMatchObject({ sessions: 1, statements: 2, rows: 7, refused: 0 });
        expect(connections['bank']).toMatchObject({ sessions: 1, statements: 3 });
        expect(connections['ledger']).toMatchObject({ sessions: 1, statements: 2, rows: 7 });
        // Totals and the timeline's bars add up to the same statements.
        const total = async (metric: string) => number(await page.locator(`[data-metric="${metric}"][data-total]`).textContent());
        const records = csvRecords(csv);
        expect(await total('statements')).toBe(records.length);
        expect(await total('sessions')).toBe(2);
        expect(await total('failed_logins')).toBe(1);
        expect(await total('denied')).toBe(1);
        const bars = await page.locator('#timeline-chart g.bar').evaluateAll((gs) => gs.map((g) => Number(g.getAttribute('data-count'))));
        expect(bars.reduce((x, y) => x + y, 0)).toBe(records.length);
        // The approval: requester, approver, outcome; the statement it released names it.
        const approval = page.locator(`tr[data-approval="${id}"]`);
        await expect(approval.locator('[data-field="requester"]').textContent()).resolves.toBe(alice);
        await expect(approval.locator('[data-field="approvers"]').textContent()).resolves.toBe(bob);
        await expect(approval.locator('[data-field="outcome"]').textContent()).resolves.toBe('used');
        const released = records.find((r) => r['statement'] === 'SELECT * FROM customers')!;
        expect(released).toMatchObject({ approval_id: id, approvers: '["apikey:bob"]', outcome: 'ok', rows: '30' });
        // Masked values: alice's three SSNs, as query.end counted them.
        const maskedOnPage = await page.locator('td[data-metric="masked_values"]').evaluateAll((tds) => tds.reduce((n, td) => n + Number((td.textContent ?? '').replace(/\D/g, '')), 0));
        const maskedInCsv = records.reduce((n, r) => n + (r['masked_columns'] ? Object.values(JSON.parse(r['masked_columns']) as Record<string, number>).reduce((x, y) => x + y, 0) : 0), 0);
        expect(maskedInCsv).toBeGreaterThanOrEqual(3);
        expect(maskedOnPage).toBe(maskedInCsv);
        // Each statement links to its recorded result.
        const links = await page.locator('#statements a').evaluateAll((as) => as.map((x) => x.getAttribute('href')));
        expect(links.sort()).toEqual(records.map((r) => `payloads/${r['end_seq']}.json`).sort());
        await expect(page.locator('#failed-logins tbody tr').count()).resolves.toBe(1);
        const carol = users['carol@bank.example'] !== undefined ? 'carol@bank.example' : 'apikey:carol';
        expect(number(await page.locator(`[data-metric="audit_reads"][data-reader="${carol}"]`).textContent())).toBe(1);
        await expect(page.locator('#refusals').textContent()).resolves.toContain('DELETE FROM customers');
        const png = await page.screenshot({ fullPage: true });
        const { width, height, distinct } = pngColours(png);
        expect(width).toBe(1280);
        expect(height).toBeGreaterThan(900);
        expect(distinct).toBeGreaterThan(20);
        expect(requests).toEqual([pathToFileURL(file).href]);
      } finally {
        await close();
      }
    } finally {
      for (const t of tunnels) await t.close();
      await gw.close();
      await db.drop();
    }
  });
});

describe('report.html from constructed logs', () => {
  test('hostile statement texts, user names, labels and comments stay text: no element, no script, no request', async () => {
    const log = new EventLog();
    const evil = actor('mallory', ['<b>g</b>'], '<img src=x onerror="document.title=\'pwned\'">@evil');
    const sid = log.session(evil);
    const script = `SELECT '<script>document.title="pwned"</script>'`;
    log.ran(evil, sid, script, { masked: { '"><svg onload=alert(1)>': 2 } });
    log.ran(evil, sid, "SELECT '</pre></td></tr></table><iframe src=\"https://evil.example/\"></iframe>'");
    log.ran(evil, sid, 'SELECT 1 /* \u202Eevil\u202C */');
    log.add('approval.requested', evil, { request: 'r-<i>x</i>', kind: 'statement', statement: '<style>body{display:none}</style>', rule: '<u>r</u>', reason: '<a href="https://evil.example">x</a>', min_approvals: 1 }, { session: sid });
    log.add('approval.decided', actor('bob', ['dba'], '<marquee>bob'), { request: 'r-<i>x</i>', decision: 'deny', comment: '<blink>no</blink>', requester: 'apikey:mallory' }, { session: sid });
    log.add('access.denied', evil, { via: 'tunnel', stage: 'connection', reason: '<object data=x>' }, { connection: '<embed src=x>' });
    log.add('auth.failed', null, { stage: 'authenticate', code: 'HOOP_AUTH_REJECTED', reason: '<link rel=stylesheet href=https://evil.example/x.css>', path: '/api/v1/"><img src=y>' }, { address: '<base href=https://evil.example/>' });
    const { html, file } = build(log.events, { generated_by: '<script>alert(2)</script>', filters: { user: '"><img src=z>' } }, {}, (seq) => (seq % 2 === 0 ? `javascript:alert(${seq})` : `payloads/${seq}.json`));
    expect(html).not.toMatch(/<(script|img|iframe|svg onload|object|embed|link|base|marquee|blink|i>|b>|u>|a href="https)/i);
    const { page, requests, close } = await open(file);
    try {
      const title = await page.title();
      expect(title).toMatch(/^hoop audit report/);
      for (const tag of ['script', 'img', 'iframe', 'object', 'embed', 'link', 'base', 'marquee', 'blink', 'i', 'b', 'u']) {
        await expect(page.locator(tag).count(), tag).resolves.toBe(0);
      }
      // Only the page's own style element; the one SVG is the chart.
      await expect(page.locator('style').count()).resolves.toBe(1);
      await expect(page.locator('svg').count()).resolves.toBe(1);
      const body = (await page.locator('body').textContent())!;
      expect(body).toContain(script);
      expect(body).toContain('<img src=x onerror="document.title=\'pwned\'">@evil');
      expect(body).toContain('"><svg onload=alert(1)>');
      expect(body).toContain('<blink>no</blink>');
      expect(body).toContain('<object data=x>');
      expect(body).toContain('<script>alert(2)</script>');
      // A bidirectional override is shown, not obeyed.
      expect(body).toContain('⟨U+202E⟩evil⟨U+202C⟩');
      // The user's numbers are keyed by the exact (hostile) name.
      const users = await metricsBy(page, 'user');
      expect(users['<img src=x onerror="document.title=\'pwned\'">@evil']).toMatchObject({ sessions: 1, statements: 3 });
      // Only relative hrefs are linked: a javascript: result link is dropped.
      const hrefs = await page.locator('a').evaluateAll((as) => as.map((x) => x.getAttribute('href')));
      expect(hrefs.length).toBeGreaterThan(0);
      for (const h of hrefs) expect(h).toMatch(/^payloads\/\d+\.json$/);
      await page.screenshot();
      expect(requests).toEqual([pathToFileURL(file).href]);
    } finally {
      await close();
    }
  });

  test('a failed verification is the headline, with the first failing seq and reason; the statement list is capped and says how many more', async () => {
    const log = new EventLog(Date.UTC(2026, 2, 3, 0, 0, 0), 60_000);
    const alice = actor('alice', ['analysts']);
    const sid = log.session(alice);
    for (let i = 0; i < 12; i++) log.ran(alice, sid, `SELECT ${i}`, { rows: i, bytes: 10 * i });
    const open1 = log.start(alice, sid, 'SELECT count(*) FROM transactions'); // still running when the range ends: no query.end
    // Edited after the fact: event 5's data changed, its hash not.
    const events = log.events.map((e) => (e.seq === 5 ? { ...e, data: { ...e.data, rows: 0 } } : e));
    const { csv, file } = build(events, {}, { statements: 5, textChars: 7 }, (seq) => (seq === 3 ? null : `payloads/${seq}.json`));
    const { page, close } = await open(file);
    try {
      expect(await page.locator('#verification').getAttribute('data-verification')).toBe('failed');
      await expect(page.locator('#verification .verdict').textContent()).resolves.toBe('VERIFICATION FAILED');
      expect(await page.locator('#failure').getAttribute('data-seq')).toBe('5');
      await expect(page.locator('#failure').textContent()).resolves.toMatch(/^First failing event: seq 5: .*hash/);
      const records = csvRecords(csv);
      expect(records).toHaveLength(13);
      expect(records.at(-1)).toMatchObject({ query_id: open1, outcome: 'unknown', end_seq: '' });
      await expect(page.locator('#statements tbody tr').count()).resolves.toBe(5);
      // Texts are cut on the page, saying where the rest is; a statement without a result file says so.
      await expect(page.locator('#statements tbody tr').first().locator('pre').textContent()).resolves.toBe('SELECT … (1 more characters in summary.csv)');
      await expect(page.locator('#statements tbody tr').first().locator('td').last().textContent()).resolves.toBe('no result file');
      expect(await page.locator('#statements-more').getAttribute('data-more')).toBe('8');
      await expect(page.locator('#statements-more').textContent()).resolves.toBe('8 more statements are in summary.csv (this page lists the first 5).');
      // The counts still cover every statement, not only the listed ones.
      const users = await metricsBy(page, 'user');
      expect(withoutSessions(users)).toEqual(fromCsv(csv, 'user'));
      expect(users['alice@bank.example']).toMatchObject({ statements: 13 });
      // 26 minutes of activity: 15-second bars (5 s would be more than 150 of them).
      expect(await page.locator('#timeline-chart').getAttribute('data-bucket-ms')).toBe('15000');
      const bars = await page.locator('#timeline-chart g.bar').evaluateAll((gs) => gs.map((g) => Number(g.getAttribute('data-count'))));
      expect(bars.reduce((x, y) => x + y, 0)).toBe(13);
      expect(SUMMARY_CSV_COLUMNS).toContain('end_seq');
    } finally {
      await close();
    }
  });

  test('the timeline bucket follows the range, and counts kept at a fine bucket merge exactly when it grows', async () => {
    const start = Date.UTC(2026, 0, 1);
    const log = new EventLog(start, 0);
    const alice = actor('alice', ['analysts']);
    const sid = log.session(alice);
    // 6 000 statements spread over 90 days (more fine buckets than the builder keeps).
    for (let i = 0; i < 6_000; i++) {
      const at = start + Math.floor((i * 90 * 86_400_000) / 6_000);
      const id = log.at(at).start(alice, sid, 'SELECT 1');
      log.end(alice, sid, id, { outcome: i % 10 === 0 ? 'refused' : 'ok' });
    }
    const { file } = build(log.events, { range: { since: '2026-01-01T00:00:00.000Z', until: '2026-04-01T00:00:00.000Z' } }, { statements: 10 });
    const { page, close } = await open(file);
    try {
      expect(await page.locator('#timeline-chart').getAttribute('data-bucket-ms')).toBe(String(86_400_000));
      const bars = await page.locator('#timeline-chart g.bar').evaluateAll((gs) => gs.map((g) => [g.getAttribute('data-bucket'), Number(g.getAttribute('data-count')), Number(g.getAttribute('data-refused'))] as const));
      expect(bars).toHaveLength(90);
      expect(bars.reduce((n, b) => n + b[1], 0)).toBe(6_000);
      expect(bars.reduce((n, b) => n + b[2], 0)).toBe(600);
      expect(bars[0]).toEqual(['2026-01-01T00:00Z', expect.any(Number), expect.any(Number)]);
    } finally {
      await close();
    }
  });

  test('bounded: the page for 20 000 statements of 100 kB each is as long as for 1 000 (lists capped, texts cut, counts exact)', () => {
    const text = `SELECT '${'x'.repeat(100_000)}'`;
    const row = (i: number): StatementRow => ({
      time: new Date(Date.UTC(2026, 2, 3) + i * 1_000).toISOString(), user: `u${i % 7}@bank.example`, groups: [], connection: 'bank', session_id: null,
      query_id: `q${i}`, statement: text, parameters: [text], outcome: 'ok', rows: 2, bytes: 100, duration_ms: 1, masked_columns: [], masked_counts: {},
      approval_id: null, approvers: [], start_seq: 2 * i + 1, end_seq: 2 * i + 2,
    });
    const page = (n: number) => {
      const b = new ReportBuilder({ statements: 500 });
      for (let i = 0; i < n; i++) b.addStatement(row(i));
      return b.render({ range: { since: '2026-03-03T00:00:00.000Z', until: '2026-03-04T00:00:00.000Z' }, filters: {}, generated_at: 'now', generated_by: 'me', gateway_version: '0',
        verification: { ok: true, events: 2 * n, first_seq: 1, last_seq: 2 * n, checkpoints: 1, key_ids: [], failure: null } }, { result: () => null });
    };
    const small = page(1_000);
    const large = page(20_000);
    expect(large.length).toBeLessThan(small.length * 1.01);
    // 500 listed statements, each text and its parameters cut near 2 000 characters.
    expect(large.length).toBeLessThan(500 * 2 * 2_200 + 1_000_000);
    expect(large).toContain('19\u202F500 more statements are in summary.csv');
    expect(large).toContain('data-metric="statements" data-total="">20\u202F000<');
  });
});
