/**
 * Waiting for a positive witness instead of sleeping: a test that needs something to have
 * happened (a statement running upstream, an event recorded, a process gone) polls for the
 * evidence and fails with a message when it never appears, rather than sleeping a guessed number
 * of milliseconds and hoping. `expect.poll` does the same for assertions; `until` returns the
 * witness itself.
 */

export interface UntilOptions {
  /** Give up after this long; default 5 s. */
  timeoutMs?: number;
  /** Between checks; default 10 ms. */
  intervalMs?: number;
  /** What was awaited, for the timeout error (a function is called only then, e.g. to show state). */
  what?: string | (() => string);
}

/** What a truthy check returned: never false, 0, '', null or undefined. */
export type Witness<T> = Exclude<T, false | 0 | '' | null | undefined>;

/**
 * Polls `check` until it returns something truthy and resolves with it. A check that throws is
 * retried as if it had returned false (a server not yet listening, a store not yet back); the last
 * error is in the timeout message. The second argument may be the timeout in ms.
 */
export async function until<T>(check: () => T, options: UntilOptions | number = {}): Promise<Witness<Awaited<T>>> {
  const { timeoutMs = 5_000, intervalMs = 10, what = 'condition' } = typeof options === 'number' ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as Witness<Awaited<T>>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const described = typeof what === 'function' ? what() : what;
      const cause = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`${described} not met within ${timeoutMs} ms${cause}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
