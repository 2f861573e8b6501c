/** libpq's sslmode values the gateway honours toward the upstream ("SSL Support" in the libpq docs). */
export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];
