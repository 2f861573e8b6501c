#!/usr/bin/env node
/**
 * The masking of `npm run bench:masking`'s rows, in this process, without sockets: CPU ns per row
 * (process.cpuUsage, steadier than wall time on a shared machine) of RowRewriter over 100,000
 * DataRows shaped like bench_wide's, for
 *   none    no transform (the framing and the loop)
 *   nohash  ssn partial + email redact
 *   masks   ssn partial + email redact + account_number hash
 *   all     masks, and the four content detectors over the clear text columns (the bench's plan)
 *   hash    the account_number hash token alone
 * with rows queued and written a 64 KB chunk at a time, as the relay does (hash tokens are
 * computed once per chunk); then `copy`: the same rows as COPY TO STDOUT text lines through
 * copy-out.ts with `all`'s transforms (prepareCopyData, settled and written a chunk at a time,
 * as the relay does); then the detector pass alone (`detect`: the four detectors over the
 * five clear text values of each row, no row framing: `all - masks` without the rewriter's share).
 * Runs the built code (dist/, or BENCH_DIST):
 *   npm run build && node bench/mask-rows.mjs
 */
import { createHash } from 'node:crypto';
import { dist } from './lib.mjs';

const { columnMasker } = await dist('policy/masking/methods.js');
const { createScrubber } = await dist('policy/masking/detectors.js');

const { RowRewriter } = await dist('protocols/postgres/transform.js');
const { KEEP, SQL_NULL, ValueSink } = await dist('protocols/value-sink.js');
const { prepareCopyData, DEFAULT_TEXT_LAYOUT } = await dist('protocols/postgres/copy-out.js');

const N = 100_000;
const md5 = (s) => createHash('md5').update(s).digest('hex');
const NAMES = ['Alice', 'Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi'];
/** Column types of bench_wide, in order. */
const TYPES = [20, 23, 25, 25, 25, 1043, 25, 1700, 1700, 701, 1184, 1114, 1042, 25, 1043];
const SSN = 12, EMAIL = 13, ACCOUNT = 14;

function dataRow(g) {
  const values = [String(g), String(g % 100000), NAMES[g % 8], 'Abcdefghij', 'Abcdefgh', ['active', 'closed', 'pending'][g % 3],
    `order ${g} shipped to warehouse ${g % 97}: ${md5(String(g))} ${md5(String(g + 1))}`, ((g % 100000) * 1.37).toFixed(2), `${(g % 50) * 1000}.00`,
    String((g % 9973) / 9973), '2020-01-01 00:00:00+00', '2021-01-01 00:00:00',
    `${String(g % 1000).padStart(3, '0')}-${String(g % 100).padStart(2, '0')}-${String(g % 10000).padStart(4, '0')}`, `user${g}@example.com`, `ACCT-${String(g).padStart(12, '0')}`];
  const fields = values.map((v) => { const b = Buffer.from(v); const len = Buffer.alloc(4); len.writeInt32BE(b.length); return Buffer.concat([len, b]); });
  const body = Buffer.concat([Buffer.from([0, TYPES.length]), ...fields]);
  const header = Buffer.alloc(5);
  header[0] = 0x44;
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

const rows = Array.from({ length: N }, (_, i) => dataRow(i + 1));
const chunk = Buffer.concat(rows);
const starts = [];
for (let at = 0, i = 0; i < N; at += rows[i].length, i++) starts.push(at);
const key = Buffer.alloc(32, 7);
const scrubber = createScrubber(['ssn', 'card_number', 'iban', 'email']);
const counts = {};
const tally = (label) => { counts[label] = (counts[label] ?? 0) + 1; };
/** The scan of one column type, decided once as plan.ts's detector transform does (valueAt on builds without forType). */
const scanOf = (typeOid) => scrubber.forType?.(typeOid) ?? ((v, start, end) => scrubber.valueAt(v, start, end, 0, typeOid));
const detect = (typeOid) => {
  const scan = scanOf(typeOid);
  return (row, start, end, _format, sink) => {
    const found = scan(row, start, end);
    if (found === null) return KEEP;
    for (const hit of found.hits) tally(`detector:${hit}`);
    return found.value === null ? SQL_NULL : sink.write(found.value, 0, found.value.length);
  };
};
const mask = (method, typeOid, label) => {
  const write = columnMasker({ column: label, type: 'other', method, keep: 4 }, typeOid, false, key).write;
  return (row, start, end, format, sink) => { tally(label); return write(row, start, end, format, sink); };
};

function transformsFor(mode) {
  return TYPES.map((typeOid, i) => {
    if (mode === 'none') return null;
    if (i === SSN) return mask('partial', typeOid, 'ssn');
    if (i === EMAIL) return mask('redact', typeOid, 'email');
    if (i === ACCOUNT) return mode === 'nohash' ? null : mask('hash', typeOid, 'account_number');
    return mode === 'all' && scrubber.scans(typeOid) ? detect(typeOid) : null;
  });
}

const cpuNs = (fn, repeat) => {
  const before = process.cpuUsage();
  for (let i = 0; i < repeat; i++) fn();
  const used = process.cpuUsage(before);
  return ((used.user + used.system) * 1000) / repeat;
};

const out = Buffer.allocUnsafe(chunk.length + 1024);
/** Rows per chunk as the relay sees them: a 64 KB read of the upstream socket. */
const CHUNK_ROWS = Math.floor(65536 / rows[0].length);
for (const mode of ['none', 'nohash', 'masks', 'all', 'hash']) {
  const transforms = mode === 'hash' ? TYPES.map((_, i) => (i === ACCOUNT ? mask('hash', TYPES[i], 'account_number') : null)) : transformsFor(mode);
  const rewriter = new RowRewriter();
  const pass = () => {
    let w = 0;
    const queuedAt = [];
    const place = () => {
      queuedAt.forEach((at, k) => rewriter.write(k, out, at));
      rewriter.clear();
      queuedAt.length = 0;
    };
    for (let r = 0; r < starts.length; r++) {
      const s = starts[r];
      const end = s + 1 + chunk.readInt32BE(s + 1);
      const size = rewriter.prepare(chunk, s + 5, end, transforms, [0]);
      if (size < 0) w += chunk.copy(out, w, s, end);
      else { queuedAt.push(w); w += size; }
      if (r % CHUNK_ROWS === CHUNK_ROWS - 1) place();
    }
    place();
  };
  cpuNs(pass, 3); // warm-up
  const label = mode === 'hash' ? 'hash    (the account_number token alone)' : mode;
  console.log(`${label.padEnd(7)} ${cpuNs(pass, 5) / N | 0} ns of CPU per row`);
}

{
  // The same rows as COPY TO STDOUT writes them in text format (none of these values needs an escape).
  const lines = rows.map((row) => {
    const values = [];
    for (let i = 0, at = 7; i < TYPES.length; i++) {
      const length = row.readInt32BE(at);
      values.push(row.subarray(at + 4, at + 4 + length).toString());
      at += 4 + length;
    }
    return Buffer.from(`${values.join('\t')}\n`);
  });
  const transforms = transformsFor('all');
  const sink = new ValueSink();
  const copyOut = Buffer.allocUnsafe(chunk.length * 2);
  const pass = () => {
    let w = 0;
    const queued = [];
    const place = () => {
      sink.settle();
      for (const prepared of queued) {
        const length = prepared.length(sink);
        prepared.write(sink, copyOut, w, length);
        w += length;
      }
      sink.reset();
      queued.length = 0;
    };
    for (let r = 0; r < lines.length; r++) {
      const prepared = prepareCopyData(lines[r], 0, lines[r].length, TYPES.length, transforms, DEFAULT_TEXT_LAYOUT, sink);
      if (prepared === null) throw new Error('a bench row could not be read as COPY text');
      queued.push(prepared);
      if (r % CHUNK_ROWS === CHUNK_ROWS - 1) place();
    }
    place();
  };
  cpuNs(pass, 3);
  console.log(`copy    ${cpuNs(pass, 5) / N | 0} ns of CPU per row: the rows as COPY text lines, \`all\`'s transforms`);
}

/** [start, end) of every value the detectors scan in `all`, row after row. */
const scanned = TYPES.flatMap((typeOid, i) => (i !== SSN && i !== EMAIL && i !== ACCOUNT && scrubber.scans(typeOid) ? [i] : []));
const ranges = new Int32Array(N * scanned.length * 2);
for (let r = 0, k = 0; r < N; r++) {
  let at = starts[r] + 7; // type, length, field count
  for (let i = 0; i < TYPES.length; i++) {
    const length = chunk.readInt32BE(at);
    if (scanned.includes(i)) { ranges[k++] = at + 4; ranges[k++] = at + 4 + length; }
    at += 4 + length;
  }
}
const scans = scanned.map((i) => scanOf(TYPES[i]));
const detectPass = () => {
  let found = 0;
  for (let k = 0; k < ranges.length;) {
    for (const scan of scans) { if (scan(chunk, ranges[k], ranges[k + 1]) !== null) found++; k += 2; }
  }
  return found;
};
const valuesFound = detectPass(); // and a warm-up
cpuNs(detectPass, 3);
console.log(`detect  ${cpuNs(detectPass, 10) / N | 0} ns of CPU per row: the detectors alone over its ${scanned.length} clear text values (${valuesFound} of ${N * scanned.length} values masked)`);

