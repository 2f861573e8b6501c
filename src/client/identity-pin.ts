/**
 * A tunnel belongs to the identity that opened it. `hoop connect` asks for a token per client
 * connection (so refreshed tokens are used), but the credential behind it can change while the
 * tunnel runs: `hoop logout` then `hoop login` as someone else, or another HOOP_TOKEN. Without a
 * pin, the next psql would open a session as the new identity under the old one's `--reason`,
 * on a port whose password the first person holds. So every token is checked to still name the
 * opening subject (the gateway's `GET /api/v1/me`, asked once per distinct token: a refresh
 * costs one request, a client connection none).
 */
import { createHash } from 'node:crypto';
import { AuthError } from '../errors.js';

export interface PinnedTokenOptions {
  /** The current token (refreshed as needed), as the tunnel would otherwise use it. */
  token: () => Promise<string>;
  /** Who a token belongs to: the gateway's subject for it (`GET /api/v1/me`). */
  subjectOf: (token: string) => Promise<string>;
  /** The subject the tunnel was opened as. */
  subject: string;
  /** What to tell the person to do, e.g. "restart `hoop connect bank`". */
  restart: string;
}

/** The token function for the tunnel: the same tokens, refused once they belong to someone else. */
export function pinnedToken(o: PinnedTokenOptions): () => Promise<string> {
  // Only the last token's answer is kept (tokens change on refresh and login, rarely otherwise),
  // as a promise, so that eight clients connecting at once ask the gateway once.
  let checked: { digest: string; subject: Promise<string> } | null = null;
  return async () => {
    const token = await o.token();
    const digest = createHash('sha256').update(token).digest('hex');
    if (checked?.digest !== digest) {
      const entry = { digest, subject: o.subjectOf(token) };
      checked = entry;
      entry.subject.catch(() => {
        if (checked === entry) checked = null; // ask again next time: a failure is not an answer
      });
    }
    const subject = await checked.subject;
    if (subject !== o.subject) {
      throw new AuthError(
        'HOOP_AUTH_REJECTED',
        `this tunnel was opened as ${o.subject}, but the credential is now ${subject}'s; new connections are refused: ${o.restart} to connect as ${subject}`,
      );
    }
    return token;
  };
}
