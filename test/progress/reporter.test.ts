import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createReporter } from '../../src/progress/reporter.js';

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

test('without a terminal, running blobs get plain progress lines at a steady pace', async () => {
  const out = capture();
  const r = createReporter({ tty: false, interval: 0.05, stream: out.stream });
  const p = r.start('abc123', 'layer', 4 * 1024 * 1024);
  p.advance(1024 * 1024);
  await new Promise((res) => setTimeout(res, 180));
  p.advance(3 * 1024 * 1024);
  p.done();
  r.info('pushed x');
  r.close();
  const lines = out.text().trimEnd().split('\n');
  const progress = lines.filter((l) => l.startsWith('  abc123 layer 1.0 MiB/4.0 MiB'));
  assert.ok(progress.length >= 2, `several progress lines while running, got:\n${out.text()}`);
  assert.match(progress[0]!, /\/s ETA \d+s$/);
  assert.deepEqual(lines.slice(-2), ['abc123 layer done (4.0 MiB)', 'pushed x']);
});

test('--quiet prints nothing; debug lines only with --debug', async () => {
  const quiet = capture();
  const q = createReporter({ tty: false, interval: 0.01, quiet: true, stream: quiet.stream });
  q.start('x', 'layer', 10).done();
  q.info('hello');
  q.debug('secret-free detail');
  await new Promise((res) => setTimeout(res, 30));
  q.close();
  assert.equal(quiet.text(), '');
  const dbg = capture();
  const d = createReporter({ tty: false, debug: true, stream: dbg.stream });
  d.debug('detail');
  d.close();
  assert.equal(dbg.text(), 'debug: detail\n');
});
