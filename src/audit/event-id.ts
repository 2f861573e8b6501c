/**
 * Event ids: UUID version 7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random
 * bits. Why not random v4 ids: the stores index `id` (unique), and a random key puts every new
 * event on a random leaf of that index, so a group commit of a few statements rewrote a page of
 * it per event (SQLite: a WAL frame each, with its fsync). Time-ordered ids append at the
 * index's right edge, like seq. Ids still say nothing the event's own `time` does not, and the
 * random part keeps them unguessable and unique across gateways.
 */
import { randomFillSync } from 'node:crypto';

/** Random bytes drawn in bulk: one native call per 512 ids. */
const pool = Buffer.alloc(16 * 512);
let used = pool.length;
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

export function eventId(now: number = Date.now()): string {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const b = pool.subarray(used, used + 16);
  used += 16;
  // 48-bit big-endian milliseconds (exact in a double until the year 10889).
  const high = Math.floor(now / 0x100000000);
  const low = now >>> 0;
  b[0] = high >>> 8; b[1] = high; b[2] = low >>> 24; b[3] = low >>> 16; b[4] = low >>> 8; b[5] = low;
  b[6] = 0x70 | (b[6]! & 0x0f); // version 7
  b[8] = 0x80 | (b[8]! & 0x3f); // variant 10
  let s = '';
  for (let i = 0; i < 16; i++) {
    s += HEX[b[i]!]!;
    if (i === 3 || i === 5 || i === 7 || i === 9) s += '-';
  }
  return s;
}
