/**
 * libpq's `sslmode` values, as the gateway's config names them for an upstream connection
 * (PostgreSQL docs, "SSL Support", table "SSL Mode Descriptions"): only `verify-ca` and
 * `verify-full` check the server's certificate, and only `verify-full` checks its name too.
 * libpq's `allow` (plaintext first) is not among them.
 */
export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

export type SslMode = (typeof SSL_MODES)[number];
