/**
 * Drives the embedded provider's real HTML pages the way a browser would: follows redirects,
 * keeps cookies, reads forms out of the page and submits them. Just enough of a browser for the
 * device flow pages (no JavaScript is involved in them).
 */
import { request } from 'undici';

export interface Form {
  id: string | null;
  action: string;
  method: string;
  fields: Record<string, string>;
}

export class Browser {
  readonly cookies = new Map<string, string>();
  url = '';
  html = '';
  status = 0;

  async open(url: string): Promise<this> {
    return this.#go('GET', url);
  }

  forms(): Form[] {
    const forms: Form[] = [];
    for (const m of this.html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
      const attrs = m[1]!;
      const body = m[2]!;
      const fields: Record<string, string> = {};
      for (const input of body.matchAll(/<input\b([^>]*)>/gi)) {
        const name = attr(input[1]!, 'name');
        if (name) fields[name] = decode(attr(input[1]!, 'value') ?? '');
      }
      forms.push({
        id: attr(attrs, 'id'),
        action: new URL(decode(attr(attrs, 'action') ?? this.url), this.url).href,
        method: (attr(attrs, 'method') ?? 'get').toUpperCase(),
        fields,
      });
    }
    return forms;
  }

  /** Submits the form whose id (or action) contains `which`, with `values` filled in. */
  async submit(which: string, values: Record<string, string> = {}): Promise<this> {
    const form = this.forms().find((f) => (f.id ?? '').includes(which) || f.action.includes(which));
    if (!form) throw new Error(`no form ${which} on ${this.url} (status ${this.status}): ${this.html.slice(0, 400)}`);
    const body = new URLSearchParams({ ...form.fields, ...values }).toString();
    return this.#go(form.method, form.action, body);
  }

  async #go(method: string, url: string, body?: string): Promise<this> {
    let current = url;
    let currentMethod = method;
    let currentBody = body;
    for (let hops = 0; hops < 20; hops++) {
      const res = await request(current, {
        method: currentMethod as 'GET' | 'POST',
        headers: {
          cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
          ...(currentBody !== undefined ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
        ...(currentBody !== undefined ? { body: currentBody } : {}),
      });
      const setCookie = res.headers['set-cookie'];
      for (const c of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
        const [pair] = c.split(';');
        const eq = pair!.indexOf('=');
        const name = pair!.slice(0, eq).trim();
        const value = pair!.slice(eq + 1).trim();
        if (/expires=Thu, 01 Jan 1970/i.test(c) || value === '') this.cookies.delete(name);
        else this.cookies.set(name, value);
      }
      const text = await res.body.text();
      if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
        current = new URL(String(res.headers.location), current).href;
        currentMethod = 'GET';
        currentBody = undefined;
        continue;
      }
      this.url = current;
      this.html = text;
      this.status = res.statusCode;
      return this;
    }
    throw new Error('too many redirects');
  }
}

function attr(attrs: string, name: string): string | null {
  const m = new RegExp(`\\b${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(attrs);
  return m ? (m[2] ?? m[3] ?? m[4] ?? '') : null;
}

function decode(text: string): string {
  return text
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCharCode(Number(d)))
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>');
}

/** Completes the device flow as `username`: code entry (if needed), confirm, login, consent. */
export async function completeDeviceLogin(
  verificationUri: string,
  userCode: string,
  user: { username: string; password: string },
  options: { deny?: boolean } = {},
): Promise<Browser> {
  const b = new Browser();
  await b.open(verificationUri);
  if (b.forms().some((f) => f.id === 'op.deviceInputForm')) await b.submit('op.deviceInputForm', { user_code: userCode });
  await b.submit('op.deviceConfirmForm');
  await b.submit('login', { username: user.username, password: user.password });
  await b.submit(options.deny ? 'deny' : 'consent');
  return b;
}
