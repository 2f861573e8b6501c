/** query.end data from the engine's StatementEnd: the accounting's extra fields reach the record. */
import { describe, expect, it } from 'vitest';
import { queryEndData } from '../../src/gateway/session-audit.js';
import { frame, MessageType, noticeResponse } from '../../src/protocols/postgres/messages.js';
import { StatementRun } from '../../src/protocols/postgres/results.js';

const START = { queryId: 'q', protocol: 'simple' as const, statement: 'COPY t FROM STDIN', statementName: null, portal: null, parameters: [] };

describe('queryEndData', () => {
  it('carries messages and upload when the run has them', () => {
    const run = new StatementRun(START, 1000);
    const n = noticeResponse({ code: '00000', message: 'hello' });
    run.notice(n, 0, 5, n.length);
    run.copyIn(false);
    const d = frame(MessageType.CopyData, Buffer.from('1\n'));
    run.uploaded(d, 0, 5, d.length);
    run.copyDone();
    const data = queryEndData(run.finish());
    expect(data.messages).toMatchObject({ notices: 1, kept: [{ kind: 'notice', message: 'hello' }] });
    expect(data.upload).toMatchObject({ rows: 1, bytes: 2, copies: [{ data: '1\n', end: 'done' }] });
  });

  it('leaves them out otherwise, so ordinary records keep their shape', () => {
    const data = queryEndData(new StatementRun(START, 1000).finish());
    expect('messages' in data || 'upload' in data).toBe(false);
  });
});
