import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { ProtocolError } from '../../../src/errors.js';
import * as m from '../../../src/protocols/postgres/messages.js';
import { sqlstateOf } from '../../../src/protocols/postgres/sqlstate.js';

/** Parses backend bytes with pg-protocol (the reference client parser). */
function parseBackend(bytes: Buffer): any[] {
  const out: any[] = [];
  new Parser().parse(bytes, (msg) => out.push(msg));
  return out;
}
const body = (b: Buffer) => b.subarray(5);

describe('backend message builders', () => {
  it('ErrorResponse and NoticeResponse carry severity, SQLSTATE, message, detail, hint', () => {
    const [err] = parseBackend(m.errorResponse({ severity: 'FATAL', code: '28P01', message: 'bad\0 password', detail: 'd', hint: 'h' }));
    expect(err).toMatchObject({ name: 'error', severity: 'FATAL', code: '28P01', message: 'bad password', detail: 'd', hint: 'h' });
    const [notice] = parseBackend(m.noticeResponse({ code: '00000', message: 'waiting' }));
    expect(notice).toMatchObject({ name: 'notice', severity: 'NOTICE', message: 'waiting' });
  });

  it('authentication, ParameterStatus, BackendKeyData, ReadyForQuery', () => {
    const msgs = parseBackend(Buffer.concat([
      m.authenticationOk(),
      m.authenticationSASL(['SCRAM-SHA-256']),
      m.authenticationSASLContinue('r=abc'),
      m.authenticationSASLFinal('v=xyz'),
      m.parameterStatus('server_version', '16.1'),
      m.backendKeyData(7, -5),
      m.readyForQuery('T'),
    ]));
    expect(msgs.map((x) => x.name)).toEqual([
      'authenticationOk', 'authenticationSASL', 'authenticationSASLContinue', 'authenticationSASLFinal',
      'parameterStatus', 'backendKeyData', 'readyForQuery',
    ]);
    expect(msgs[1].mechanisms).toEqual(['SCRAM-SHA-256']);
    expect(msgs[2].data).toBe('r=abc');
    expect(msgs[3].data).toBe('v=xyz');
    expect(msgs[4]).toMatchObject({ parameterName: 'server_version', parameterValue: '16.1' });
    expect(msgs[5]).toMatchObject({ processID: 7, secretKey: -5 });
    expect(msgs[6].status).toBe('T');
  });
});

describe('frontend message decoders', () => {
  it('Query, Parse, Bind (formats and values), Execute, Describe, Close', () => {
    expect(m.decodeQuery(body(serialize.query('select 1')))).toEqual({ sql: 'select 1' });
    expect(m.decodeParse(body(serialize.parse({ name: 'st', text: 'select $1, $2', types: [23, 25] }))))
      .toEqual({ name: 'st', sql: 'select $1, $2', paramTypes: [23, 25] });
    const bind = m.decodeBind(body(serialize.bind({ portal: 'p', statement: 'st', values: ['a', null, Buffer.from([1, 2])], binary: true })));
    expect(bind.portal).toBe('p');
    expect(bind.statement).toBe('st');
    expect(bind.paramFormats).toEqual([0, 0, 1]);
    expect(bind.values.map((v) => v?.toString('hex') ?? null)).toEqual(['61', null, '0102']);
    expect(bind.resultFormats).toEqual([1]);
    expect(m.decodeExecute(body(serialize.execute({ portal: 'p', rows: 10 })))).toEqual({ portal: 'p', maxRows: 10 });
    expect(m.decodeTarget(body(serialize.describe({ type: 'S', name: 'st' })), 'Describe')).toEqual({ kind: 'S', name: 'st' });
    expect(m.decodeTarget(body(serialize.close({ type: 'P', name: 'p' })), 'Close')).toEqual({ kind: 'P', name: 'p' });
  });

  it('Bind with one format code applies it to every parameter', () => {
    const b = Buffer.concat([m.cstring(''), m.cstring(''), Buffer.from([0, 1, 0, 1, 0, 2, 0, 0, 0, 1, 9, 0, 0, 0, 1, 8, 0, 0])]);
    expect(m.decodeBind(b).paramFormats).toEqual([1, 1]);
  });

  it('StartupMessage and CancelRequest', () => {
    const s = m.decodeStartupMessage(serialize.startup({ user: 'u', database: 'd', application_name: 'psql' }).subarray(4));
    expect(s.protocol).toBe(196608);
    expect(s.parameters).toMatchObject({ user: 'u', database: 'd', application_name: 'psql' });
    expect(m.decodeCancelRequest(serialize.cancel(11, 22).subarray(4))).toEqual({ processId: 11, secretKey: 22 });
  });

  it('malformed bodies throw ProtocolError, never RangeError', () => {
    const cases: [(b: Buffer) => unknown, Buffer][] = [
      [m.decodeQuery, Buffer.from('no terminator')],
      [m.decodeParse, Buffer.from('a\0b\0\xff\xff', 'latin1')],
      [m.decodeBind, Buffer.from('\0\0\0\x01\0\0\0\x01\x7f\xff\xff\xff', 'latin1')],
      [m.decodeExecute, Buffer.from('\0\0\0', 'latin1')],
      [m.decodeDataRow, Buffer.from([0, 1, 0, 0, 0, 9, 1])],
      [m.decodeRowDescription, Buffer.from([0, 1, 65])],
      [m.decodeNoticeFields, Buffer.from('Sxx', 'latin1')],
      [(b) => m.decodeTarget(b, 'Describe'), Buffer.from('Zname\0', 'latin1')],
    ];
    for (const [fn, bytes] of cases) expect(() => fn(bytes)).toThrow(ProtocolError);
  });
});

describe('backend message decoders', () => {
  it('RowDescription, DataRow, CommandComplete, ErrorResponse, ParameterDescription', () => {
    const rd = Buffer.concat([Buffer.from([0, 1]), m.cstring('id'), Buffer.from([0, 0, 0, 5, 0, 1, 0, 0, 0, 23, 0, 4, 255, 255, 255, 255, 0, 1])]);
    expect(m.decodeRowDescription(rd)).toEqual([{ name: 'id', tableOid: 5, column: 1, typeOid: 23, format: 1 }]);
    const dr = Buffer.from([0, 2, 0, 0, 0, 1, 0x41, 255, 255, 255, 255]);
    expect(m.decodeDataRow(dr).map((v) => v?.toString() ?? null)).toEqual(['A', null]);
    expect(m.decodeCommandComplete(m.cstring('SELECT 3'))).toEqual({ tag: 'SELECT 3' });
    const err = body(m.errorResponse({ severity: 'ERROR', code: '42601', message: 'syntax' }));
    expect(m.decodeNoticeFields(err)).toMatchObject({ S: 'ERROR', C: '42601', M: 'syntax' });
    expect(m.decodeParameterDescription(Buffer.from([0, 2, 0, 0, 0, 23, 0, 0, 0, 25]))).toEqual([23, 25]);
  });
});

describe('sqlstateOf', () => {
  it('maps hoop codes to SQLSTATEs in one place', () => {
    expect(sqlstateOf('HOOP_PROTOCOL')).toBe('08P01');
    expect(sqlstateOf('HOOP_AUTH_REJECTED')).toBe('28000');
    expect(sqlstateOf('HOOP_FORBIDDEN')).toBe('42501');
    expect(sqlstateOf('HOOP_AUDIT_UNAVAILABLE')).toBe('58000');
    expect(sqlstateOf('HOOP_UPSTREAM')).toBe('08006');
  });
});
