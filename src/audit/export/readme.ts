/** The bundle's README.txt (docs/audit-export.md): what an examiner reads first. */
import type { Manifest } from './bundle.js';

/** README.txt: how an examiner checks the bundle, with hoop and with standard tools alone. */
export function readmeText(m: Manifest): string {
  const filters = [m.filters.user !== null ? `user ${m.filters.user}` : null, m.filters.connection !== null ? `connection ${m.filters.connection}` : null].filter(Boolean).join(', ') || 'none';
  return `hoop audit bundle (${m.format})
=====================================

Created ${m.created_at} by ${m.created_by.email ?? m.created_by.subject} on a hoop gateway ${m.gateway_version}.
Range: ${m.range.since} (inclusive) to ${m.range.until} (exclusive). Filters: ${filters}.
Events ${m.span.first_seq} to ${m.span.last_seq} of the gateway's hash-chained audit log:
${m.counts.events_full} in full, ${m.counts.events_omitted} omitted (stub lines), ${m.counts.statements} statements,
${m.counts.payloads} recorded results, ${m.counts.payloads_pruned} results pruned by retention.
SHA256SUMS is signed by key ${m.signing_key_id}.

Open report.html in a browser for the overview (it needs no network and no scripts).
summary.csv has one row per statement; payloads/<seq>.json holds what the statement whose
query.end event has that seq returned to the client, exactly as recorded.

What to trust: compare the key ids that signed (keys/*.pem, named by key id) with the key id the
gateway operator keeps on record outside the log (the gateway logs it at start:
"audit checkpoints are signed with this key"). A key id is the hex SHA-256 of the raw 32-byte
Ed25519 public key.

1. With hoop
------------
    hoop audit verify bundle.tar.gz --key ${m.signing_key_id}

It checks everything below and prints VERIFIED, or FAILED with the first failing event and why
(exit code 10).

2. With standard tools only
---------------------------
    mkdir bundle && tar xzf bundle.tar.gz -C bundle && cd bundle

a) Every file is the one that was exported:

    sha256sum -c SHA256SUMS

b) SHA256SUMS was signed by the gateway's key (OpenSSL 3):

    openssl pkeyutl -verify -pubin -inkey keys/${m.signing_key_id}.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig

c) The events are a piece of one hash chain. events.jsonl has one JSON object per line, for
   every seq from ${m.span.first_seq} to ${m.span.last_seq} with no gap. For each event

       hash = SHA-256 hex of UTF-8( prev_hash + canonical JSON of the event without "hash" )

   where canonical JSON has object keys sorted and no whitespace, and each line's prev_hash is
   the previous line's hash (64 zeros for seq 1). In Python 3 (json.dumps with these arguments
   writes the same bytes as hoop for the values hoop records):

       import hashlib, json
       prev = None
       for text in open('events.jsonl', encoding='utf-8'):
           e = json.loads(text)
           assert prev is None or e['prev_hash'] == prev, e['seq']
           if not e.get('omitted'):
               body = {k: v for k, v in e.items() if k != 'hash'}
               canon = json.dumps(body, sort_keys=True, separators=(',', ':'), ensure_ascii=False)
               assert hashlib.sha256((e['prev_hash'] + canon).encode('utf-8')).hexdigest() == e['hash'], e['seq']
           prev = e['hash']

   A line {"hash":...,"omitted":true,"prev_hash":...,"seq":N} is a STUB: an event in the span
   that this export leaves out (outside the range, or not matching the filters). Its content is
   not in the bundle, so its hash cannot be recomputed, but the chain still runs through it: its
   prev_hash is the previous line's hash and the next line's prev_hash is its hash, so nothing
   was removed, added or reordered between the anchors.

d) A recorded result matches its event: for an event with "payload_sha256",

       sha256sum payloads/<seq>.json

   prints that value. A seq listed in manifest.json "pruned_payloads" had its result deleted by
   the gateway's retention; its event still says how many rows and bytes were returned.

e) Signed checkpoints anchor the chain. A "checkpoint" event's data holds seq, hash, key_id,
   public_key (base64) and signature (base64 Ed25519 over the UTF-8 text
   "hoop-checkpoint-v1\\n<seq>\\n<hash>"), and vouches that the event at that seq had that hash.
   The first line (seq ${m.span.first_seq}) is the head a checkpoint in this bundle vouches for
   (or seq 1, whose prev_hash is 64 zeros), and the last line is a checkpoint: so the span can be
   neither cut short nor extended without the key.
`;
}
