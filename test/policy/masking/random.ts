/** Seeded random values for the masking tests, and the check digits that make shapes valid. */

/** mulberry32: small, seeded, good enough to spread test cases. */
export function prng(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const pick = <T>(items: ArrayLike<T>): T => items[int(0, items.length - 1)]!;
  const chars = (alphabet: string, length: number) => Array.from({ length }, () => pick(alphabet)).join('');
  return { next, int, pick, chars };
}
export type Random = ReturnType<typeof prng>;

/** `body` and the Luhn check digit that makes it pass. */
export function luhnComplete(body: string): string {
  for (let check = 0; check < 10; check++) {
    const candidate = body + check;
    let sum = 0;
    for (let i = candidate.length - 1, double = false; i >= 0; i--, double = !double) {
      let digit = Number(candidate[i]);
      if (double && (digit *= 2) > 9) digit -= 9;
      sum += digit;
    }
    if (sum % 10 === 0) return candidate;
  }
  throw new Error('unreachable');
}

/** An IBAN of that country and BBAN, its mod-97 check digits right (ISO 13616). */
export function ibanComplete(country: string, bban: string): string {
  const numeric = [...`${bban}${country}00`].map((c) => (c >= 'A' ? String(c.charCodeAt(0) - 55) : c)).join('');
  let remainder = 0n;
  remainder = BigInt(numeric) % 97n;
  return `${country}${String(98n - remainder).padStart(2, '0')}${bban}`;
}

/** `digits` in groups of `size` joined by `separator`. */
export const group = (digits: string, size: number, separator: string) => digits.match(new RegExp(`.{1,${size}}`, 'g'))!.join(separator);
