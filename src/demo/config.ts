/**
 * The demo's identities, access rules and gateway config. The config is written out as a real
 * hoop.yaml in the data dir and loaded through `loadConfig`, the same path as
 * `hoop gateway --config`, so the demo cannot drift from what a deployment accepts.
 *
 * Access in the demo:
 *   alice  group analysts  may connect to `bank`
 *   bob    group dba       may connect to `bank`; role admin
 *   carol  group audit     role auditor (reads every session); may NOT connect to `bank`
 *
 * Masking on `bank`: SSNs, emails, credit scores, account and card numbers and IBANs are masked
 * for alice; bob's group (dba) is exempt and sees clear values.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiKeyHash } from '../identity/api-keys.js';

export const DEMO_CONNECTION = 'bank';
export const DEMO_DATABASE = 'bank';
export const DEMO_SERVICE_ROLE = 'hoop_svc';

export const DEMO_IDENTITIES = [
  { name: 'alice', groups: ['analysts'], can: 'may connect to bank' },
  { name: 'bob', groups: ['dba'], can: 'may connect to bank; admin' },
  { name: 'carol', groups: ['audit'], can: 'auditor: reads all sessions; may not connect' },
] as const;
export type DemoIdentityName = (typeof DEMO_IDENTITIES)[number]['name'];

/** Groups that may use the `bank` connection, and the gateway roles the groups hold. */
export const DEMO_ACCESS = ['analysts', 'dba'];
export const DEMO_ROLES = { admin: ['dba'], auditor: ['audit'] };

/** The demo's masking rules (docs/configuration.md, "masking"), as hoop.yaml flow mappings. */
export const DEMO_MASKING_RULES = [
  '{column: bank.customers.ssn, type: ssn, method: partial, keep: 4}',
  '{column: bank.customers.email, type: email, method: redact}',
  '{column: bank.customers.credit_score, type: credit_score, method: "null"}',
  '{column: bank.accounts.account_number, type: account_number, method: hash}',
  '{column: bank.accounts.iban, type: iban, method: partial, keep: 4}',
  '{column: bank.cards.card_number, type: card_number, method: partial, keep: 4}',
];
/** Groups that see the protected columns in clear. */
export const DEMO_MASKING_EXEMPT = ['dba'];

/** The demo's access rules: analysts read, and a whole-table export (or a read the planner puts over 500 rows) waits for a dba's approval. */
export const DEMO_APPROVAL_RULES = [
  '{name: analysts-read-only, groups: [analysts], when: {kind: [insert, update, delete, merge, ddl, dcl, copy_in]}, action: deny}',
  '{name: full-export, groups: [analysts], when: {kind: [select, copy_out], tables: [customers, accounts, cards, transactions], where: false, limit: false, aggregates: false}, action: require_approval}',
  // A WHERE that keeps every row (`where id > 0`) is still an export: the planner's estimate says so.
  '{name: bulk-read, groups: [analysts], when: {kind: [select, copy_out], tables: [customers, accounts, cards, transactions], estimated_rows: ">500"}, action: require_approval}',
];

export interface DemoConfigInput {
  /** Gateway port on 127.0.0.1 (0: any). */
  port: number;
  /** Port of the throwaway PostgreSQL on 127.0.0.1. */
  upstreamPort: number;
  /** `hoop_svc`'s password; written to a 0600 file, referenced as `${file:...}`. */
  dbPassword: string;
  /** Plaintext API keys; only their SHA-256 goes into the config. */
  keys: Record<DemoIdentityName, string>;
  /** `identity.oidc` lines for the embedded identity provider (src/identity/demo-oidc.ts). */
  oidcLines?: string[];
}

/** Writes `hoop.yaml` and `bank-db.password` into `dataDir`; returns the config's path. */
export function writeDemoConfig(dataDir: string, c: DemoConfigInput): string {
  const passwordFile = 'bank-db.password';
  writeFileSync(join(dataDir, passwordFile), `${c.dbPassword}\n`, { mode: 0o600 });
  const q = (s: string) => JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar
  const list = (items: readonly string[]) => `[${items.map(q).join(', ')}]`;
  const yaml = [
    '# Written by `hoop demo`: the configuration of the demo gateway. Every key is described in',
    '# docs/configuration.md. Relative paths resolve against this file\'s directory.',
    `listen: ${q(`127.0.0.1:${c.port}`)}`,
    '# The one-hop path: psql straight to the gateway, an API key as the password (loopback, no',
    '# TLS in the demo; docs/native-listener.md). A free port: the banner prints it.',
    'postgres_listen: "127.0.0.1:0"',
    'store: "sqlite:hoop.db"',
    'identity:',
    ...(c.oidcLines ?? []),
    '  api_keys:                     # only the SHA-256 of each key is configured',
    ...DEMO_IDENTITIES.map((i) => `    - {name: ${i.name}, sha256: ${apiKeyHash(c.keys[i.name])}, groups: ${list(i.groups)}}`),
    `roles: {admin: ${list(DEMO_ROLES.admin)}, auditor: ${list(DEMO_ROLES.auditor)}}`,
    'connections:',
    `  - name: ${DEMO_CONNECTION}`,
    '    type: postgres',
    `    upstream: {host: 127.0.0.1, port: ${c.upstreamPort}, database: ${DEMO_DATABASE}, user: ${DEMO_SERVICE_ROLE},`,
    `               password: ${q(`\${file:${passwordFile}}`)}, sslmode: disable}`,
    `    access: ${list(DEMO_ACCESS)}`,
    '    masking:                    # protected columns, masked for everyone outside `exempt`',
    '      columns:',
    ...DEMO_MASKING_RULES.map((r) => `        - ${r}`),
    '      detectors: [ssn, card_number, iban, email]   # the content net over everything else',
    `      exempt: ${list(DEMO_MASKING_EXEMPT)}`,
    '      predicates: deny          # no WHERE ssn LIKE ... guessing',
    '    approval:                   # risky statements wait on the live connection for a reviewer',
    `      approvers: ${list(DEMO_ROLES.admin)}`,
    '      timeout: 10m',
    '      rules:',
    ...DEMO_APPROVAL_RULES.map((r) => `        - ${r}`),
    'audit:',
    '  payload_limit: 1MiB',
    '  signing_key: signing.key',
    '',
  ].join('\n');
  const file = join(dataDir, 'hoop.yaml');
  writeFileSync(file, yaml, { mode: 0o600 });
  return file;
}
