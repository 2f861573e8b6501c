/**
 * `hoop audit verify BUNDLE [--key KEY]...`: an audit bundle checked offline, as it streams
 * (src/audit/bundle-verify.ts); `hoop audit verify --gateway URL [--since T] [--until T]`: the
 * gateway's live log, fetched as a bundle of everything in the range and checked the same way
 * while it arrives. One line per check, then VERIFIED or `FAILED at seq N: reason`; exit 10 on
 * any failure.
 */
import { createPublicKey } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { keyIdOf } from '../../audit/checkpoint.js';
import { verifyBundle, type BundleReport } from '../../audit/bundle-verify.js';
import { HoopError, UsageError } from '../../errors.js';
import { arg, defineCommand, opt } from '../command.js';
import type { CommandContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { printJson, printTable, sanitize } from '../output.js';
import { parseTimeArg } from '../time.js';

/** The beginning of any log: `--since` when not given. */
const BEGINNING = '1970-01-01T00:00:00.000Z';

/**
 * A trusted key as an examiner may write it: the hex key id (SHA-256 of the raw public key),
 * the same digest OpenSSH-style (`SHA256:<base64>`), or a public key PEM file. Returns the hex id.
 */
export function parseKeyRef(raw: string): string {
  const v = raw.trim();
  if (/^[0-9a-fA-F]{64}$/.test(v)) return v.toLowerCase();
  if (/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(v)) {
    const digest = Buffer.from(v.slice(7), 'base64');
    if (digest.length === 32) return digest.toString('hex');
  }
  if (existsSync(v) && statSync(v).isFile() && statSync(v).size < 16 * 1024) {
    const text = readFileSync(v, 'utf8');
    if (!text.includes('-----BEGIN PUBLIC KEY-----')) throw new UsageError(`--key ${v}: not a public key PEM file (-----BEGIN PUBLIC KEY-----)`);
    try {
      const key = createPublicKey(text);
      if (key.asymmetricKeyType === 'ed25519') return keyIdOf((key.export({ type: 'spki', format: 'der' }) as Buffer).subarray(12));
    } catch {
      // falls through to the usage error
    }
    throw new UsageError(`--key ${v}: not an Ed25519 public key`);
  }
  throw new UsageError(`invalid --key '${raw.slice(0, 80)}': give a key id (64 hex digits, as hoop audit keys lists), SHA256:<base64> of the same digest, or a public key PEM file`);
}

export const auditVerifyCommand = defineCommand({
  name: 'verify',
  summary: "Check an audit bundle offline, or the gateway's log: hashes, links, payloads, signatures",
  description:
    'Verify an audit bundle (hoop audit export --bundle) without a gateway: every event hash and\n' +
    'link (through the stubs of events a filter left out), every payload, every signed checkpoint,\n' +
    "the span's anchors, SHA256SUMS and its signature. --key names a key you trust (repeat it for\n" +
    'several): every key that signed must be one of them. Without BUNDLE, verifies the log of the\n' +
    "gateway (--gateway, HOOP_GATEWAY or the saved one) the same way, as an export of everything\n" +
    'in --since/--until streams in (auditors and admins). Exits 10 on any failure.',
  args: [arg('bundle', "the bundle (.tar.gz), or - for stdin; omit to verify the gateway's log", { optional: true, complete: 'file' })],
  options: {
    key: opt.repeated('--key <key>', 'a trusted key: key id (hex), SHA256:<base64>, or public key PEM file; repeatable', parseKeyRef, { complete: 'file' }),
    since: opt.text('--since <time>', "without BUNDLE: events at or after this time (default: the log's beginning)"),
    until: opt.text('--until <time>', 'without BUNDLE: events before this time (default: now)'),
  },
  examples: [
    'hoop audit verify evidence-2026-03-03.tar.gz --key 3f2a…c9e1',
    'hoop audit verify --gateway https://hoop.bank.example --since 2026-03-01 --until 2026-04-01',
    'hoop audit verify bundle.tar.gz --json | jq .failure',
  ],
  async run(ctx, { args, options }) {
    const bundle = args['bundle'] as string | undefined;
    const trusted = options.key.length > 0 ? { trustedKeys: options.key } : {};
    let report: BundleReport;
    let source: string;
    if (bundle !== undefined) {
      if (options.since !== undefined || options.until !== undefined) {
        throw new UsageError('--since and --until apply to the gateway\'s log (no BUNDLE); a bundle covers the range it was made for');
      }
      if (bundle === '-') {
        // A bundle piped in: hoop audit export --bundle -o - | hoop audit verify - --key …
        if (ctx.io.isStdinTTY) throw new UsageError('BUNDLE "-" reads the bundle from stdin; pipe one in');
        source = 'stdin';
        report = await verifyBundle(ctx.io.stdin, trusted);
      } else {
        if (!existsSync(bundle) || !statSync(bundle).isFile()) throw new HoopError('HOOP_NOT_FOUND', `no such file: ${bundle}`);
        source = bundle;
        report = await verifyBundle(createReadStream(bundle, { highWaterMark: 256 * 1024 }), trusted);
      }
    } else {
      const now = ctx.now();
      const since = options.since === undefined ? BEGINNING : parseTimeArg(options.since, '--since', now);
      const until = options.until === undefined ? now.toISOString() : parseTimeArg(options.until, '--until', now);
      if (since >= until) throw new UsageError(`--since (${since}) must be before --until (${until})`);
      const api = ctx.api();
      source = `${api.gateway} ${since} .. ${until}`;
      report = await verifyBundle(await api.auditBundle({ since, until }), trusted);
    }
    if (ctx.globals.json) printJson(ctx.io, { source, ...report });
    else renderReport(ctx, source, report);
    return report.ok ? ExitCode.OK : ExitCode.AUDIT_VERIFY_FAILED;
  },
});

export const auditKeysCommand = defineCommand({
  name: 'keys',
  summary: 'The keys that sign the audit log, with their first and last use: what to pass to verify --key',
  description:
    "The gateway's audit signing keys: the active one (audit.signing_key), retired ones\n" +
    '(audit.previous_keys) and any other key found in checkpoints, with the first and last\n' +
    'checkpoint each signed. The KEY ID is what hoop audit verify --key takes; keep it on record\n' +
    'outside the gateway. --json includes each public key as PEM.',
  examples: ['hoop audit keys', 'hoop audit verify bundle.tar.gz --key "$(hoop audit keys --json | jq -r \'.[0].key_id\')"'],
  async run(ctx) {
    const keys = await ctx.api().auditKeys();
    if (ctx.globals.json) return printJson(ctx.io, keys);
    printTable(ctx.io, [{ title: 'KEY ID', keep: true }, 'STATUS', 'FIRST USED', 'LAST USED'], keys.map((k) => [k.key_id, k.status, k.first_used ?? '-', k.last_used ?? '-']));
  },
});

const MARK = { ok: 'ok  ', failed: 'FAIL', not_checked: '--  ' } as const;

function renderReport(ctx: CommandContext, source: string, r: BundleReport): void {
  const { io } = ctx;
  const cs = io.out;
  const width = Math.max(...r.checks.map((c) => c.name.length));
  io.print(`Verifying ${sanitize(source)}`);
  for (const c of r.checks) {
    const mark = c.status === 'ok' ? cs.green(MARK.ok) : c.status === 'failed' ? cs.red(MARK.failed) : cs.dim(MARK.not_checked);
    io.print(`${mark}  ${c.name.padEnd(width)}  ${sanitize(c.detail)}`);
  }
  io.print(`Events: ${r.events} (${r.events_full} full, ${r.events_omitted} omitted); payloads: ${r.payloads_checked} checked, ${r.payloads_pruned} pruned; checkpoints: ${r.checkpoints}`);
  if (r.span) io.print(`Span: seq ${r.span.first_seq} .. ${r.span.last_seq}`);
  if (r.time_range) io.print(`Time range: ${r.time_range.first} .. ${r.time_range.last}`);
  for (const k of r.keys) {
    const trust = k.trusted === null ? 'not checked (no --key)' : k.trusted ? cs.green('trusted') : cs.red('NOT trusted');
    io.print(`Key ${k.key_id}: signed ${k.signed.join(' and ')}${k.checkpoints ? ` (${k.checkpoints} checkpoints)` : ''}, ${trust}`);
  }
  const f = r.failure;
  if (!f) {
    io.print(cs.bold(cs.green('VERIFIED')));
    return;
  }
  const where = f.seq !== null ? ` at seq ${f.seq}${f.id ? ` (id ${sanitize(f.id)})` : ''}` : f.file ? ` (${sanitize(f.file)})` : '';
  io.print(cs.bold(cs.red(`FAILED${where}: ${sanitize(f.reason)}`)));
}
