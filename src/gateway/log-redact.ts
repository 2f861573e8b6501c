/** Defence in depth: nothing logs these, and if something ever did, they would not reach the log. */
const REDACT = ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization'];

/** pino's `redact` option for every gateway logger (`hoop gateway` and its workers, `hoop demo`, the default one). */
export const LOG_REDACT = { paths: REDACT, censor: '[redacted]' };
