/**
 * What one statement's record may keep. Kept rows, messages and uploads share one `payloadLimit`
 * budget; once something does not fit, nothing more is kept, so each kept list is a prefix of
 * what passed. Counts and hashes always cover everything.
 */

/** Result sets (and COPY uploads) kept per statement (a Query may hold thousands of statements);
 *  later ones count as truncated. */
export const MAX_SETS = 1000;

export class PayloadBudget {
  private kept = 0;
  /** The budget refused something: from here on nothing more is kept (rows, messages,
   *  uploads), so that each kept list is a prefix of what passed. */
  private full = false;

  constructor(private readonly limit: number) {}

  /** Bytes of result values, messages and uploads kept for the record. */
  get keptSize(): number {
    return this.kept;
  }

  get isFull(): boolean {
    return this.full;
  }

  /** Charges `size` kept bytes; false (and full from now on) if it does not fit. */
  keep(size: number): boolean {
    if (this.full) return false;
    if (this.kept + size > this.limit) {
      this.full = true;
      return false;
    }
    this.kept += size;
    return true;
  }
}
