/**
 * What `hoop demo` prints once everything is up: where things are, who you can be, and exactly
 * what to type next. Pure text, so the test can read it and the wording lives in one place.
 */
import { basename } from 'node:path';
import type { BankTable } from './bank.js';

const n = (x: number) => x.toLocaleString('en-US');

export interface BannerIdentity {
  name: string;
  groups: string[];
  /** What this identity may do, in a few words. */
  can: string;
  key: string;
}

export interface BannerInfo {
  gatewayUrl: string;
  connection: string;
  postgresVersion: string;
  counts: Record<BankTable, number>;
  dataDir: string;
  configFile: string;
  logFile: string;
  /** Whether the data dir is removed at stop (a temp dir), or kept (given by the user). */
  dataDirRemoved: boolean;
  identities: BannerIdentity[];
  /** Who the walkthrough uses (must be one of `identities`). */
  walkthroughAs: string;
  /** The auditor, shown reading everyone's sessions. */
  auditor: string;
  /** Who sees masked columns in clear (shown running the same query). */
  exempt: string;
  startupMs: number;
  /** How the user runs the CLI: `hoop` when installed, else e.g. `node bin/hoop.js`. */
  cli?: string;
  /**
   * Extra sections after the identities (e.g. the embedded OIDC provider's users for
   * `hoop login`). Each is a title and its lines.
   */
  sections?: { title: string; lines: string[] }[];
}

/** The walkthrough's query: the same text, masked for one identity and clear for the exempt one. */
export const MASKED_QUERY = 'select c.full_name, c.ssn, c.email, c.credit_score, a.account_number from customers c join accounts a on a.customer_id = c.id limit 5;';

export function formatBanner(b: BannerInfo): string {
  const walker = b.identities.find((i) => i.name === b.walkthroughAs);
  const auditor = b.identities.find((i) => i.name === b.auditor);
  const exempt = b.identities.find((i) => i.name === b.exempt);
  if (!walker || !auditor || !exempt) throw new Error('banner: walkthrough, exempt or auditor identity missing');
  const nameWidth = Math.max(...b.identities.map((i) => i.name.length));
  const groupWidth = Math.max(...b.identities.map((i) => i.groups.join(',').length));
  const canWidth = Math.max(...b.identities.map((i) => i.can.length));
  const total = Object.values(b.counts).reduce((a, n) => a + n, 0);
  const hoop = b.cli ?? 'hoop';
  const first: [string, string][] = [
    [`${hoop} connections`, `what ${walker.name} may use`],
    [`${hoop} connect ${b.connection}`, 'keep it running: it prints a psql URI with a password made for this run (valid only while it runs, only on that local port)'],
  ];
  const second: [string, string][] = [
    [`${hoop} sessions`, 'the sessions recorded so far: each statement is logged before it runs'],
    [`${hoop} sessions show <id>`, 'its statements: parameters, timings, rows, the data returned'],
  ];
  const width = Math.max(32, ...[...first, ...second].map(([c]) => c.length + 2));
  const env = `export HOOP_GATEWAY=${b.gatewayUrl} HOOP_TOKEN=${walker.key}`;

  const lines = [
    '',
    `hoop demo is running (ready in ${(b.startupMs / 1000).toFixed(1)} s)`,
    '',
    `  gateway     ${b.gatewayUrl}`,
    `  connection  ${b.connection}: PostgreSQL ${b.postgresVersion} holding a fictional bank (${n(total)} rows:`,
    `              ${n(b.counts.customers)} customers, ${n(b.counts.accounts)} accounts, ${n(b.counts.cards)} cards, ${n(b.counts.transactions)} transactions)`,
    `  data dir    ${b.dataDir}`,
    `              ${basename(b.configFile)} (this gateway's config), hoop.db (the audit log), ${basename(b.logFile)}`,
    '',
    'Demo identities (API keys, valid while the demo runs):',
    ...b.identities.map(
      (i) => `  ${i.name.padEnd(nameWidth)}  ${i.groups.join(',').padEnd(groupWidth)}  ${i.can.padEnd(canWidth)}  HOOP_TOKEN=${i.key}`,
    ),
    ...(b.sections ?? []).flatMap((s) => ['', s.title, ...s.lines.map((l) => `  ${l}`)]),
    '',
    `Try it as ${walker.name}. In a second terminal:`,
    `  ${env}`,
    ...commands(first, width),
    '',
    'In a third terminal (same export line first):',
    '  psql "<the URI hoop connect printed>"',
    `    bank=> ${MASKED_QUERY}`,
    `           (as ${walker.name}: ssn shows ***-**-1234, email ****, credit_score empty; account numbers are stable tokens)`,
    '    bank=> select * from customer_overview order by total_balance desc limit 5;',
    "    bank=> select id from customers where ssn like '9%';      -- refused: guessing a protected value",
    '    bank=> select * from customers;                           -- a full export: held for a reviewer',
    `           (it waits and prints a request id; ${exempt.name} approves it in another terminal:`,
    `            HOOP_TOKEN=${exempt.key} ${hoop} reviews, then ${hoop} review approve <id>)`,
    ...commands(second, width),
    '',
    `The same query as ${exempt.name} (${exempt.groups.join(',')}, exempt from masking) shows clear values:`,
    `  HOOP_TOKEN=${exempt.key} ${hoop} connect ${b.connection} --port 5434`,
    `  psql "<the URI it printed>" -c "${MASKED_QUERY.replace(/;$/, '')}"`,
    '',
    `${auditor.name} (${auditor.groups.join(',')}) reads everyone's sessions: HOOP_TOKEN=${auditor.key} ${hoop} sessions`,
    '',
    b.dataDirRemoved
      ? `Press Ctrl-C to stop: the gateway and PostgreSQL stop and ${b.dataDir} is removed.`
      : `Press Ctrl-C to stop: the gateway and PostgreSQL stop; ${b.dataDir} (the audit log) is kept.`,
    '',
  ];
  return lines.join('\n');
}

/** Commands with their comments aligned, so they can be copied a line at a time. */
function commands(pairs: [string, string][], width: number): string[] {
  return pairs.map(([command, comment]) => `  ${command.padEnd(width)}# ${comment}`);
}
