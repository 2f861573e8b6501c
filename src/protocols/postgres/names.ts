/**
 * Prepared statement and portal names as the SERVER sees them, predicted from the client's
 * messages ahead of the server's answers (pipelining), and corrected when the answers come.
 *
 * The record of an Execute names the SQL its portal runs, so this prediction is what the audit
 * log says. A client must not be able to make it wrong, and the server does not apply every
 * message a client sends: a Parse of a named statement that exists fails ("already exists") and
 * the old one stays; after any error the server skips every message up to Sync; a failed Parse
 * of the unnamed statement has already dropped the previous one. So each Parse/Bind/Close is a
 * tentative Version on its name, confirmed by ParseComplete/BindComplete/CloseComplete, or
 * undone when the server refused or skipped it, falling back to the version below it.
 *
 * Answers arrive in message order: when a version is settled, every earlier one is too, so the
 * chain below a confirmed version is never needed again and memory stays bounded by what is in
 * flight.
 */

export interface Version<V> {
  readonly name: string;
  /** undefined: the name is not defined (a Close, or a failed unnamed Parse). */
  value: V | undefined;
  prev: Version<V> | null;
  /** The server never applied it. */
  undone: boolean;
}

export class NameTable<V> {
  private readonly heads = new Map<string, Version<V>>();

  get(name: string): V | undefined {
    return this.heads.get(name)?.value;
  }

  /** The current version of a name, to resolve later with `valueOf` (a portal's statement). */
  version(name: string): Version<V> | null {
    return this.heads.get(name) ?? null;
  }

  /** A tentative definition (value) or removal (undefined) of `name`. */
  define(name: string, value: V | undefined): Version<V> {
    const v: Version<V> = { name, value, prev: this.heads.get(name) ?? null, undone: false };
    this.heads.set(name, v);
    return v;
  }

  /** The server applied it. */
  confirm(v: Version<V>): void {
    v.prev = null;
    if (v.value === undefined && this.heads.get(v.name) === v) this.heads.delete(v.name);
  }

  /** The server failed it in a way that leaves the name undefined (unnamed Parse). */
  clear(v: Version<V>): void {
    v.value = undefined;
    this.confirm(v);
  }

  /** Replaces every defined value (e.g. once the server says they may have changed behind us). */
  replaceAll(make: (name: string, old: V) => V, only: (name: string) => boolean = () => true): void {
    for (const [name, head] of this.heads) {
      if (head.value === undefined || !only(name)) continue;
      const v: Version<V> = { name, value: make(name, head.value), prev: null, undone: false };
      this.heads.set(name, v);
    }
  }

  /** The current value of every defined name. */
  *values(): IterableIterator<V> {
    for (const head of this.heads.values()) if (head.value !== undefined) yield head.value;
  }

  /** The server refused or skipped it: the name is what it was before. */
  undo(v: Version<V>): void {
    v.undone = true;
    if (this.heads.get(v.name) !== v) return; // a later version stands; it skips this one when undone
    const below = live(v.prev);
    if (below && below.value !== undefined) this.heads.set(v.name, below);
    else this.heads.delete(v.name);
  }
}

function live<V>(v: Version<V> | null): Version<V> | null {
  while (v && v.undone) v = v.prev;
  return v;
}

/** The value a version stood for once undone versions are skipped. */
export function valueOf<V>(v: Version<V> | null): V | undefined {
  return live(v)?.value;
}
