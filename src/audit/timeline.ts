/**
 * Statements per time bucket, in bounded memory whatever the range. Counts are kept at a fine
 * bucket that grows when more than HELD_BUCKETS are held; each bucket size is a multiple of the
 * one before, so counts merge exactly. `buckets()` picks the size shown from the range: the
 * smallest that gives at most SHOWN_BUCKETS bars.
 */
export const BUCKET_SIZES_MS: readonly number[] = [1, 5, 15, 60, 300, 900, 3_600, 21_600, 86_400, 7 * 86_400, 28 * 86_400, 364 * 86_400].map((s) => s * 1_000);
const HELD_BUCKETS = 4_096;
const SHOWN_BUCKETS = 150;

export interface BucketCount {
  all: number;
  refused: number;
}

export interface Buckets {
  sizeMs: number;
  /** The first bucket's start and the last one's end (ms since the epoch). */
  from: number;
  to: number;
  /** Only buckets with statements, in time order. */
  bars: ({ start: number } & BucketCount)[];
}

export class Timeline {
  private step = 0;
  private readonly counts = new Map<number, BucketCount>();

  add(ms: number, refused: boolean): void {
    if (!Number.isFinite(ms)) return;
    merge(this.counts, floorTo(ms, BUCKET_SIZES_MS[this.step]!), { all: 1, refused: refused ? 1 : 0 });
    while (this.counts.size > HELD_BUCKETS && this.step < BUCKET_SIZES_MS.length - 1) this.coarsen();
  }

  get empty(): boolean {
    return this.counts.size === 0;
  }

  /** The bars to show over [since, until) (widened to every statement held; NaN: the statements' own span). */
  buckets(since: number, until: number): Buckets {
    let first = Infinity;
    let last = -Infinity;
    for (const key of this.counts.keys()) {
      first = Math.min(first, key);
      last = Math.max(last, key + BUCKET_SIZES_MS[this.step]!);
    }
    const from = Number.isFinite(since) ? Math.min(since, first) : first;
    const to = Number.isFinite(until) ? Math.max(until, last) : last;
    let step = this.step;
    while (step < BUCKET_SIZES_MS.length - 1 && (to - from) / BUCKET_SIZES_MS[step]! > SHOWN_BUCKETS) step++;
    const sizeMs = BUCKET_SIZES_MS[step]!;
    const shown = new Map<number, BucketCount>();
    for (const [key, c] of this.counts) merge(shown, floorTo(key, sizeMs), c);
    return {
      sizeMs,
      from: floorTo(from, sizeMs),
      to: Math.max(floorTo(from, sizeMs) + sizeMs, Math.ceil(to / sizeMs) * sizeMs),
      bars: [...shown.entries()].sort((a, b) => a[0] - b[0]).map(([start, c]) => ({ start, ...c })),
    };
  }

  private coarsen(): void {
    this.step++;
    const held = [...this.counts.entries()];
    this.counts.clear();
    for (const [key, c] of held) merge(this.counts, floorTo(key, BUCKET_SIZES_MS[this.step]!), c);
  }
}

function floorTo(ms: number, size: number): number {
  return Math.floor(ms / size) * size;
}

function merge(into: Map<number, BucketCount>, key: number, c: BucketCount): void {
  const to = into.get(key) ?? { all: 0, refused: 0 };
  to.all += c.all;
  to.refused += c.refused;
  into.set(key, to);
}
