/**
 * The HTML of report.html, from what ReportBuilder (report.ts) gathered. Self-contained: inline
 * CSS, an inline SVG timeline, no script, no request to anywhere (a Content-Security-Policy
 * forbids both, should anything slip through). Every value that comes from an event goes
 * through `esc`; a link only to a relative path inside the bundle (`safeHref`). The numbers carry
 * data attributes (`data-metric`, `data-user`, `data-connection`, `data-total`) so that a test, or
 * an examiner's script, reads them back (docs/audit-report.md).
 */
import type { ReportInput, ReportLinks, ReportState, Tally } from './report.js';
import type { Buckets } from './timeline.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;

export function renderReport(s: ReportState, input: ReportInput, links: ReportLinks): string {
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>hoop audit report ${esc(input.range.since)} – ${esc(input.range.until)}</title>`,
    `<style>${CSS}</style></head><body>`,
    header(input),
    verificationBlock(input.verification),
    totalsBlock(s),
    timelineBlock(s, input.range),
    tallyTable('Per user', 'user', s.byUser),
    tallyTable('Per connection', 'connection', s.byConnection),
    approvalsBlock(s),
    maskedBlock(s),
    refusalsBlock(s),
    failedLoginsBlock(s),
    statementsBlock(s, links),
    readersBlock(s),
    typesBlock(s),
    '</body></html>',
    '',
  ].join('\n');
}

function header(input: ReportInput): string {
  const f = input.filters;
  const filters = [f.user !== undefined ? `user ${f.user}` : null, f.connection !== undefined ? `connection ${f.connection}` : null].filter((x): x is string => x !== null);
  return `<header><h1>hoop audit report</h1><dl class="meta">
<dt>Range</dt><dd id="range" data-since="${esc(input.range.since)}" data-until="${esc(input.range.until)}">${esc(input.range.since)} – ${esc(input.range.until)}</dd>
<dt>Filters</dt><dd id="filters">${filters.length === 0 ? 'none (every user and connection)' : esc(filters.join(', '))}</dd>
<dt>Generated</dt><dd>${esc(input.generated_at)} by ${esc(input.generated_by)}</dd>
<dt>Gateway</dt><dd>hoop ${esc(input.gateway_version)}</dd>
</dl></header>`;
}

function totalsBlock(s: ReportState): string {
  const t = s.totals;
  const cells: [string, string, number][] = [
    ['sessions', 'Sessions', t.sessions],
    ['statements', 'Statements', t.statements],
    ['rows', 'Rows returned', t.rows],
    ['bytes', 'Bytes returned', t.bytes],
    ['users', 'Users', t.users.size],
    ['connections', 'Connections', t.connections.size],
    ['refused', 'Statements refused', t.refused],
    ['denied', 'Access refusals', s.deniedCount],
    ['failed_logins', 'Failed logins', s.failedCount],
    ['approvals', 'Approval requests', s.approvals.size + s.approvalsUntracked],
  ];
  if (s.logins > 0) cells.push(['logins', 'Logins', s.logins]);
  return `<section id="totals"><h2>In this range</h2><div class="cards">${cells
    .map(([metric, label, n]) => `<div class="card"><div class="n" data-metric="${metric}" data-total="">${count(n)}</div><div class="l">${label}</div></div>`)
    .join('')}</div></section>`;
}

function timelineBlock(s: ReportState, range: ReportInput['range']): string {
  const chart = s.timeline.empty ? '<p class="none">No statements in this range.</p>' : timelineSvg(s.timeline.buckets(Date.parse(range.since), Date.parse(range.until)));
  return `<section id="timeline"><h2>Activity</h2>${chart}</section>`;
}

/** Bars of statements per bucket, refused ones in red over them; each bar's <title> is its tooltip. */
function timelineSvg({ sizeMs: size, from, to, bars }: Buckets): string {
  const n = Math.max(1, Math.round((to - from) / size));
  const max = Math.max(1, ...bars.map((c) => c.all));
  const W = 960, H = 220, left = 48, right = 12, top = 12, bottom = 36;
  const bw = (W - left - right) / n;
  const y = (v: number) => top + (H - top - bottom) * (1 - v / max);
  const rect = (x: number, w: number, v: number, cls = '') => `<rect${cls} x="${fx(x)}" y="${fx(y(v))}" width="${fx(w)}" height="${fx(y(0) - y(v))}"/>`;
  const shown = bars.map((c) => {
    const x = left + ((c.start - from) / size) * bw;
    const w = Math.max(1, bw - (bw > 4 ? 1 : 0));
    const label = `${iso(c.start)} – ${iso(c.start + size)}: ${c.all} statements${c.refused ? `, ${c.refused} refused` : ''}`;
    return `<g class="bar" data-bucket="${iso(c.start)}" data-count="${c.all}" data-refused="${c.refused}"><title>${label}</title>${rect(x, w, c.all)}${c.refused ? rect(x, w, c.refused, ' class="refused"') : ''}</g>`;
  });
  const axis = `<line x1="${left}" y1="${y(0)}" x2="${W - right}" y2="${y(0)}" class="axis"/><line x1="${left}" y1="${top}" x2="${left}" y2="${y(0)}" class="axis"/>`
    + `<text x="${left - 6}" y="${top + 10}" text-anchor="end">${max}</text><text x="${left - 6}" y="${y(0)}" text-anchor="end">0</text>`
    + `<text x="${left}" y="${H - 14}">${iso(from)}</text><text x="${W - right}" y="${H - 14}" text-anchor="end">${iso(to)}</text>`
    + `<text x="${(left + W - right) / 2}" y="${H - 2}" text-anchor="middle">statements per ${duration(size)} (red: refused)</text>`;
  return `<svg id="timeline-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="statements per ${duration(size)}" data-bucket-ms="${size}">${axis}${shown.join('')}</svg>`;
}

function approvalsBlock(s: ReportState): string {
  const list = [...s.approvals.values()];
  const shown = list.slice(0, s.listed);
  const more = list.length - shown.length + s.approvalsUntracked;
  const rows = shown.map((a) => `<tr data-approval="${esc(a.id)}">
<td class="mono">${esc(a.id)}</td><td class="t">${esc(a.time)}</td><td>${esc(a.kind)}</td><td data-field="requester">${esc(a.requester)}</td><td>${esc(a.connection ?? '')}</td>
<td>${esc(a.rule ?? '')}</td><td>${a.statement !== null ? `<pre>${esc(a.statement)}</pre>` : a.duration_ms !== null ? `access for ${esc(duration(a.duration_ms))}` : ''}${a.reason ? `<div class="why">reason: ${esc(a.reason)}</div>` : ''}</td>
<td data-field="approvers">${esc(a.approvers.join(', '))}</td><td data-field="outcome" class="o-${esc(a.outcome.replace(/[^a-z]/g, ''))}">${esc(a.outcome)}${a.denied_by ? ` by ${esc(a.denied_by)}${a.comment ? `: ${esc(a.comment)}` : ''}` : ''}${a.window ? `<div class="why">${esc(a.window)}</div>` : ''}</td></tr>`);
  return section('approvals', 'Approvals', list.length + s.approvalsUntracked === 0 ? '<p class="none">No approval requests in this range.</p>'
    : `${table(['Request', 'Requested', 'Kind', 'Requester', 'Connection', 'Rule', 'What', 'Approved by', 'Outcome'], rows)}${moreLine(more, 'approval requests', 'events.jsonl')}`);
}

function maskedBlock(s: ReportState): string {
  const list = [...s.masked.entries()].sort((a, b) => b[1].values - a[1].values || cmp(a[0], b[0]));
  const rows = list.map(([label, m]) => `<tr><td>${esc(label)}</td><td class="num" data-metric="masked_values" data-label="${esc(label)}">${count(m.values)}</td><td class="num" data-metric="masked_statements" data-label="${esc(label)}">${count(m.statements)}</td></tr>`);
  return section('masked', 'Masked values', list.length === 0 ? '<p class="none">No values were masked in this range.</p>' : table(['Column or detector', 'Values masked', 'Statements'], rows));
}

function refusalsBlock(s: ReportState): string {
  const st = s.refusedStatements;
  const stRows = st.items.map((r) => `<tr><td class="t">${esc(r.time)}</td><td>${esc(r.user)}</td><td>${esc(r.connection ?? '')}</td><td class="stmt"><pre>${esc(r.statement)}</pre></td><td>${esc(r.error ?? '')}</td><td class="num">${r.start_seq}</td></tr>`);
  const dn = s.denials;
  const dnRows = dn.items.map((r) => `<tr><td class="t">${esc(r.time)}</td><td>${esc(r.user)}</td><td>${esc(r.connection ?? '')}</td><td>${esc(r.via)}</td><td>${esc(r.stage)}</td><td>${esc(r.reason)}</td><td>${esc(r.address ?? '')}</td></tr>`);
  return section('refusals', 'Refusals', `<h3>Statements refused</h3>${st.items.length === 0 ? '<p class="none">None.</p>'
    : table(['Time', 'User', 'Connection', 'Statement', 'Why', 'Seq'], stRows) + moreLine(st.more, 'refused statements', 'summary.csv (outcome refused)')}
<h3>Access refused (access.denied)</h3>${dn.items.length === 0 ? '<p class="none">None.</p>'
    : table(['Time', 'User', 'Connection', 'Via', 'Check', 'Why', 'From'], dnRows) + moreLine(dn.more, 'refusals', 'events.jsonl (access.denied)')}`);
}

function failedLoginsBlock(s: ReportState): string {
  const f = s.failedLogins;
  const rows = f.items.map((r) => `<tr><td class="t">${esc(r.time)}</td><td>${esc(r.address ?? '')}</td><td>${esc(r.application ?? '')}</td><td>${esc(r.reason)}</td><td>${esc(r.path ?? '')}</td><td class="num">${count(r.count)}</td></tr>`);
  return section('failed-logins', 'Failed logins (auth.failed)', f.items.length === 0 ? '<p class="none">None.</p>'
    : table(['Time', 'From', 'Client', 'Why', 'Path', 'Attempts'], rows) + moreLine(f.more, 'failed logins', 'events.jsonl (auth.failed)'));
}

function statementsBlock(s: ReportState, links: ReportLinks): string {
  const shown = s.statements;
  const rows = shown.map(({ row: r, parameters }) => {
    const href = safeHref(links.result(r));
    return `<tr data-seq="${r.start_seq}" class="o-${esc(r.outcome.replace(/[^a-z_]/g, ''))}">
<td class="t">${esc(r.time)}</td><td>${esc(r.user)}</td><td>${esc(r.connection ?? '')}</td><td class="mono" title="${esc(r.session_id ?? '')}">${esc((r.session_id ?? '').slice(0, 8))}</td>
<td class="stmt"><pre>${esc(r.statement)}</pre>${r.phase ? `<div class="why">${esc(r.phase)} only</div>` : ''}${parameters !== null ? `<div class="why">parameters: ${esc(parameters)}</div>` : ''}</td>
<td>${esc(r.outcome)}${r.error ? `<div class="why">${esc(r.error)}</div>` : ''}</td><td class="num">${r.rows === null ? '' : count(r.rows)}</td><td class="num">${r.bytes === null ? '' : count(r.bytes)}</td><td class="num">${r.duration_ms === null ? '' : esc(String(r.duration_ms))}</td>
<td>${esc(r.masked_columns.map((c) => `${c} (${r.masked_counts[c] ?? 0})`).join(', '))}</td><td>${r.approval_id ? `${esc(r.approval_id)}${r.approvers.length ? `<div class="why">by ${esc(r.approvers.join(', '))}</div>` : ''}` : ''}</td>
<td>${href !== null ? `<a href="${esc(href)}">result</a>` : r.end_seq === null ? '<span class="why">no query.end</span>' : '<span class="why">no result file</span>'}</td></tr>`;
  });
  const body = shown.length === 0 ? '<p class="none">No statements in this range.</p>'
    : table(['Time', 'User', 'Connection', 'Session', 'Statement', 'Outcome', 'Rows', 'Bytes', 'ms', 'Masked', 'Approval', 'Result'], rows)
      + `<p class="more" id="statements-more" data-more="${s.statementsMore}">${s.statementsMore === 0 ? 'Every statement of the range is listed above; summary.csv has the same rows in full.'
        : `${count(s.statementsMore)} more statements are in summary.csv (this page lists the first ${count(shown.length)}).`}</p>`;
  return section('statements', 'Statements', body);
}

function readersBlock(s: ReportState): string {
  const list = [...s.readers.entries()].sort((a, b) => b[1].reads + b[1].exports - a[1].reads - a[1].exports || cmp(a[0], b[0]));
  const rows = list.map(([who, r]) => `<tr><td>${esc(who)}</td><td class="num" data-metric="audit_reads" data-reader="${esc(who)}">${count(r.reads)}</td><td class="num" data-metric="exports" data-reader="${esc(who)}">${count(r.exports)}</td></tr>`);
  return section('readers', 'Who read the audit log', list.length === 0 ? '<p class="none">Nobody read or exported the audit log in this range.</p>'
    : table(['Who', 'Reads (audit.read)', 'Exports (export.created)'], rows));
}

function typesBlock(s: ReportState): string {
  const rows = [...s.types.entries()].sort((a, b) => cmp(a[0], b[0])).map(([t, n]) => `<tr><td class="mono">${esc(t)}</td><td class="num" data-metric="events" data-type="${esc(t)}">${count(n)}</td></tr>`);
  return section('types', 'Events by type', rows.length === 0 ? '<p class="none">None.</p>' : table(['Type', 'Events'], rows));
}

function verificationBlock(v: ReportInput['verification']): string {
  const span = v.first_seq === null ? 'no events' : `seq ${v.first_seq}–${v.last_seq ?? v.first_seq}`;
  const headline = v.ok
    ? `<p class="verdict">VERIFIED</p><p>Every event's hash, the chain's continuity and every checkpoint signature check out.</p>${v.checkpoints === 0
      ? '<p class="warn" id="no-checkpoint">No signed checkpoint covers these events: the hashes show any edit of one event, but not a log rewritten whole or cut short.</p>' : ''}`
    : `<p class="verdict">VERIFICATION FAILED</p><p id="failure" data-seq="${v.failure?.seq ?? ''}">${v.failure ? `First failing event: seq ${v.failure.seq}: ${esc(v.failure.reason)}` : 'The chain did not verify.'}</p>`;
  return `<section id="verification" class="${v.ok ? 'ok' : 'failed'}" data-verification="${v.ok ? 'verified' : 'failed'}">${headline}
<dl class="meta"><dt>Events</dt><dd data-metric="verified_events">${count(v.events)} (${esc(span)})</dd>
<dt>Checkpoints</dt><dd data-metric="checkpoints">${count(v.checkpoints)}</dd>
<dt>Signing keys</dt><dd class="mono">${v.key_ids.length === 0 ? 'none' : v.key_ids.map(esc).join('<br>')}</dd>
${v.payloads_pruned ? `<dt>Payloads pruned</dt><dd data-metric="payloads_pruned">${count(v.payloads_pruned)} (by retention; their hashes still verify)</dd>` : ''}</dl>
<p class="why">Check it yourself: <code>hoop audit verify</code> on this bundle, or <code>sha256sum -c SHA256SUMS</code> and the steps in README.txt.</p></section>`;
}

function tallyTable(title: string, key: 'user' | 'connection', m: Map<string, Tally>): string {
  const list = [...m.entries()].sort((a, b) => b[1].statements - a[1].statements || cmp(a[0], b[0]));
  const cell = (metric: keyof Tally, name: string, n: number) => `<td class="num" data-metric="${metric}" data-${key}="${esc(name)}">${count(n)}</td>`;
  const rows = list.map(([name, t]) => `<tr><td>${esc(name === '' ? '(none)' : name)}</td>${cell('sessions', name, t.sessions)}${cell('statements', name, t.statements)}${cell('rows', name, t.rows)}${cell('bytes', name, t.bytes)}${cell('refused', name, t.refused)}</tr>`);
  return section(`per-${key}`, title, list.length === 0 ? '<p class="none">None.</p>' : table([key === 'user' ? 'User' : 'Connection', 'Sessions', 'Statements', 'Rows returned', 'Bytes returned', 'Refused'], rows));
}


function section(id: string, title: string, body: string): string {
  return `<section id="${id}"><h2>${esc(title)}</h2>${body}</section>`;
}

function table(head: string[], rows: string[]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

function moreLine(more: number, what: string, where: string): string {
  return more > 0 ? `<p class="more">${count(more)} more ${esc(what)} are not listed here: see ${esc(where)}.</p>` : '';
}

/**
 * Escapes text for HTML content and double-quoted attributes. Control characters and the
 * bidirectional overrides that could make a statement read differently from what ran
 * ("Trojan Source", CVE-2021-42574) are shown as their code points.
 */
export function esc(s: string): string {
  return s
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!)
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\uFEFF]/g, (c) => `⟨U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`)
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Only a relative path is linked (a bundle's own file): no scheme, no host, nothing that leaves the bundle. */
function safeHref(href: string | null): string | null {
  if (href === null) return null;
  return /^(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})(?:[A-Za-z0-9._~\/-]|%[0-9A-Fa-f]{2})*$/.test(href) && !href.split('/').includes('..') ? href : null;
}

/** An integer with thin spaces between thousands (what the page shows; strip them to read it back). */
function count(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, '\u202F');
}

function duration(ms: number): string {
  if (ms % (1440 * MINUTE) === 0) return ms === 1440 * MINUTE ? 'day' : `${ms / (1440 * MINUTE)} days`;
  if (ms % (60 * MINUTE) === 0) return ms === 60 * MINUTE ? 'hour' : `${ms / (60 * MINUTE)} hours`;
  if (ms % MINUTE === 0) return ms === MINUTE ? 'minute' : `${ms / MINUTE} minutes`;
  return ms === SECOND ? 'second' : `${Math.round(ms / SECOND)} seconds`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, 'Z').replace(/T(\d\d:\d\d):00Z$/, 'T$1Z');
}

function fx(v: number): string {
  return v.toFixed(2).replace(/\.?0+$/, '');
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}


const CSS = `
:root{color-scheme:light;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--ok:#1a7f37;--bad:#cf222e;--bar:#0969da}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:24px auto;max-width:1400px;padding:0 16px}
h1{font-size:24px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
#verification{border:3px solid;border-radius:8px;padding:12px 16px;margin:16px 0}#verification.ok{border-color:var(--ok);background:#dafbe1}#verification.failed{border-color:var(--bad);background:#ffebe9}
.verdict{font-size:28px;font-weight:700;margin:0}.ok .verdict{color:var(--ok)}.failed .verdict{color:var(--bad)}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:130px}.card .n{font-size:20px;font-weight:600}.card .l{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;margin:4px 0}th,td{border:1px solid var(--line);padding:3px 6px;vertical-align:top;text-align:left;overflow-wrap:anywhere}td.stmt{min-width:24em}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.t{white-space:nowrap;font-size:12px}
.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;max-height:12em;overflow:auto}
.why{color:var(--muted);font-size:12px}.warn{color:#9a6700;font-weight:600}.none{color:var(--muted)}.more{font-weight:600}
tr.o-refused td,tr.o-error td{background:#fff8f8}.o-denied,.o-expired{color:var(--bad)}.o-approved,.o-used{color:var(--ok)}
svg text{font-size:11px;fill:var(--muted)}svg .axis{stroke:var(--muted)}svg .bar rect{fill:var(--bar)}svg .bar rect.refused{fill:var(--bad)}
@media print{body{margin:0}pre{max-height:none}}
`;
