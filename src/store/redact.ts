/** Store URLs carry database passwords; nothing hoop prints or throws may contain one. */

/**
 * `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, and `password=` parameters.
 * Takes the LAST `@` as the end of the user info, so an unencoded `@` or `/` in a password is
 * still hidden (at worst more than the password is).
 */
export function redactUrl(url: string): string {
  let out = url;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(out);
  const at = out.lastIndexOf('@');
  if (scheme && at > scheme[0].length) {
    const userinfo = out.slice(scheme[0].length, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) out = `${scheme[0]}${userinfo.slice(0, colon)}:***${out.slice(at)}`;
  }
  return out.replace(/([?&]password=)[^&#]*/gi, '$1***');
}

/** Removes every occurrence of `secret` from a message (driver errors may echo connection strings). */
export function redactSecret(message: string, secret: string | null | undefined): string {
  if (!secret) return message;
  return message.split(secret).join('***');
}
