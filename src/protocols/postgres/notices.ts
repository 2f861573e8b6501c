/**
 * NoticeResponse and NotificationResponse messages sent to the client, for query.end's
 * `messages`: kept decoded, with their own SHA-256, so that `result.sha256` still proves the data
 * alone, comparable across runs, while notices with volatile text are proved apart. Also the
 * decoders for a notice or notification that arrives while no statement runs.
 */
import { createHash } from 'node:crypto';
import type { PayloadBudget } from './budget.js';
import { BodyReader, decodeNoticeFields } from './messages.js';
import { RangeHash } from './range-hash.js';

/**
 * A NoticeResponse or NotificationResponse the client received while the statement ran.
 * `statement`: index of the statement it came under (commands completed before it), as in
 * ResultSet; `after`: result messages (rows, COPY data, function results) the client had
 * received before it in this run, so that it can be placed among the rows.
 */
export type StatementMessage =
  | ({ kind: 'notice' } & MessagePlace & NoticeRecord)
  | ({ kind: 'notification' } & MessagePlace & NotificationRecord);

/** Where a StatementMessage fell in its run. */
export interface MessagePlace { statement: number; after: number }

/** A NoticeResponse as kept: `severity` is the non-localized one (V) where the server sent it. */
export interface NoticeRecord { severity: string; code: string; message: string; detail?: string; hint?: string }

/** A NotificationResponse: `pid` is the notifying backend's (upstream) process id. */
export interface NotificationRecord { pid: number; channel: string; payload: string }

/** Notices and notifications sent to the client under the statement (StatementEnd.messages). */
export interface StatementMessages {
  notices: number;
  notifications: number;
  /** Bytes of those messages (type, length, body). */
  bytes: number;
  /** In the order sent, while the payload budget lasted. */
  kept: StatementMessage[];
  /** Some were not kept (payload limit). */
  truncated: boolean;
  /** SHA-256 over every NoticeResponse and NotificationResponse message (type byte, length and
   *  body, exactly as sent to the client), in order, including those not kept. */
  sha256: string;
}

/** NotificationResponse body: Int32 pid, String channel, String payload. */
export function decodeNotification(body: Buffer): NotificationRecord {
  const r = new BodyReader(body, 'NotificationResponse');
  return { pid: r.int32(), channel: r.cstring(), payload: r.cstring() };
}

/** NoticeResponse body, as kept in the record: severity, code, message, detail and hint. */
export function decodeNotice(body: Buffer): NoticeRecord {
  const f = decodeNoticeFields(body);
  const out: NoticeRecord = { severity: f.V ?? f.S ?? 'NOTICE', code: f.C ?? '00000', message: f.M ?? '' };
  if (f.D !== undefined) out.detail = f.D;
  if (f.H !== undefined) out.hint = f.H;
  return out;
}

/**
 * A NotificationResponse that arrived while no statement ran (LISTEN in an idle session), for a
 * record of its own: the notification, and the SHA-256 and size of the message as sent to the
 * client. buffer[start, end) is the message, its body from bodyStart.
 */
export function notificationRecord(buffer: Buffer, start: number, bodyStart: number, end: number): NotificationRecord & { bytes: number; sha256: string } {
  return {
    ...decodeNotification(buffer.subarray(bodyStart, end)),
    bytes: end - start,
    sha256: createHash('sha256').update(buffer.subarray(start, end)).digest('hex'),
  };
}

/** The notices and notifications of one statement run; created by the first one. */
export class MessageLog {
  private readonly record: StatementMessages = { notices: 0, notifications: 0, bytes: 0, kept: [], truncated: false, sha256: '' };
  private readonly hash = new RangeHash();

  constructor(private readonly budget: PayloadBudget) {}

  /** A NoticeResponse or NotificationResponse as sent to the client: buffer[start, end), its body from bodyStart. */
  add(kind: StatementMessage['kind'], buffer: Buffer, start: number, bodyStart: number, end: number, at: MessagePlace): void {
    this.hash.add(buffer, start, end);
    this.record.bytes += end - start;
    if (kind === 'notice') this.record.notices++;
    else this.record.notifications++;
    if (this.record.truncated) return;
    if (!this.budget.keep(end - bodyStart)) {
      this.record.truncated = true;
      return;
    }
    const body = buffer.subarray(bodyStart, end);
    this.record.kept.push(kind === 'notice' ? { kind, ...at, ...decodeNotice(body) } : { kind, ...at, ...decodeNotification(body) });
  }

  finish(): StatementMessages {
    return { ...this.record, sha256: this.hash.digest() };
  }
}
