/**
 * Runs one OS keychain operation in its own process, so that a keychain that hangs (a locked
 * login keyring waiting for a prompt nobody sees, a wedged D-Bus) can be abandoned and killed
 * by the CLI after a timeout. Reads one JSON request on stdin (secrets never travel in argv),
 * writes one JSON answer on stdout.
 */
import { Entry } from '@napi-rs/keyring';

interface Request {
  op: 'get' | 'set' | 'delete';
  service: string;
  account: string;
  secret?: string;
}

function entry(req: Request): Entry {
  // On Linux pin the Secret Service: the kernel keyring fallback forgets everything at logout.
  return new Entry(req.service, req.account, process.platform === 'linux' ? { linux: { store: 'secret-service' } } : undefined);
}

function run(req: Request): unknown {
  switch (req.op) {
    case 'get':
      return entry(req).getPassword() ?? null;
    case 'set':
      entry(req).setPassword(req.secret ?? '');
      return true;
    case 'delete':
      return entry(req).deleteCredential();
  }
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  input += chunk;
});
process.stdin.on('end', () => {
  let answer: { ok: true; value: unknown } | { ok: false; error: string };
  try {
    answer = { ok: true, value: run(JSON.parse(input) as Request) };
  } catch (err) {
    answer = { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  process.stdout.write(JSON.stringify(answer));
});
