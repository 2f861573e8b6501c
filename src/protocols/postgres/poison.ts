/**
 * The one way a refused statement is kept from the server: in its place goes a message that
 * fails upstream before anything runs, so responses stay in order (the client gets the refusal
 * where the statement's answer would be) and the session stays usable.
 */
import { randomUUID } from 'node:crypto';
import { isHoopError } from '../../errors.js';
import { MessageType, cstring, errorResponse, frame } from './messages.js';
import type { Failure } from './responses.js';
import { sqlstateOf } from './sqlstate.js';

/** A simple-protocol message that fails with a syntax error and changes nothing upstream. */
export const POISON_QUERY = frame(MessageType.Query, cstring('hoop refused'));

/** A Bind of a statement that does not exist: fails before anything is planned or run. */
export function poisonBind(portal: string): Buffer {
  return frame(MessageType.Bind, cstring(portal), cstring(`hoop refused ${randomUUID()}`), Buffer.alloc(6));
}

/** A Parse of the same name with text that does not parse: the name is never defined. */
export function poisonParse(name: string): Buffer {
  return frame(MessageType.Parse, cstring(name), cstring('hoop refused'), Buffer.alloc(2));
}

/** An Execute of a portal the client never bound (`taken` says which names exist). */
export function poisonExecute(taken: (name: string) => boolean): Buffer {
  let name: string;
  do name = `hoop refused ${randomUUID()}`;
  while (taken(name));
  return frame(MessageType.Execute, cstring(name), Buffer.alloc(4));
}

/** A hook's failure as a refusal. */
export function refusalOf(err: unknown): Failure {
  // Anything but a deliberate policy refusal means the audit record could not be made: fail closed
  // without leaking the store's internals to the client.
  if (isHoopError(err) && err.code !== 'HOOP_AUDIT_UNAVAILABLE' && err.code !== 'HOOP_STORE' && err.code !== 'HOOP_INTERNAL') {
    return { code: sqlstateOf(err.code), message: `hoop: statement refused: ${err.message}` };
  }
  return { code: sqlstateOf('HOOP_AUDIT_UNAVAILABLE'), message: 'hoop: statement refused: audit log unavailable' };
}

/** The ErrorResponse the client gets in place of the poison message's error. */
export function refusalResponse(r: Failure): Buffer {
  const audit = r.code === sqlstateOf('HOOP_AUDIT_UNAVAILABLE');
  return errorResponse({ severity: 'ERROR', code: r.code, message: r.message, hint: audit ? 'nothing was executed; retry once the gateway can record statements again' : undefined });
}
