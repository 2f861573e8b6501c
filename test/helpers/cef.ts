/** An independent CEF reader for tests, written from the spec (not from src/audit/export/cef.ts). */

/**
 * A CEF line per the ArcSight CEF spec, written apart from the exporter: seven `|`-separated
 * header fields where `\|` and `\\` are escapes, then `key=value` pairs separated by spaces,
 * where a value runs until the next unescaped ` key=` and `\=`, `\\`, `\n`, `\r` are escapes.
 */
export function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  if (!line.startsWith('CEF:0|')) throw new Error(`not a CEF line: ${line.slice(0, 40)}`);
  const header: string[] = [];
  let i = 'CEF:0|'.length;
  let field = '';
  while (header.length < 6) {
    const c = line[i++]!;
    if (c === '\\') field += line[i++];
    else if (c === '|') (header.push(field), (field = ''));
    else field += c;
  }
  const ext: Record<string, string> = {};
  const rest = line.slice(i);
  // Split at unescaped "=" signs: each key is the last word before one.
  const pieces: string[] = [];
  let cur = '';
  for (let j = 0; j < rest.length; j++) {
    if (rest[j] === '\\') {
      cur += rest[j]! + rest[j + 1]!;
      j++;
    } else if (rest[j] === '=') {
      pieces.push(cur);
      cur = '';
    } else cur += rest[j];
  }
  pieces.push(cur);
  const unescape = (v: string) => v.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));
  let key = pieces[0]!;
  for (let j = 1; j < pieces.length; j++) {
    const p = pieces[j]!;
    const last = j === pieces.length - 1;
    const cutAt = last ? p.length : p.lastIndexOf(' ');
    ext[key] = unescape(p.slice(0, cutAt));
    key = p.slice(cutAt + 1);
  }
  return { header, ext };
}
