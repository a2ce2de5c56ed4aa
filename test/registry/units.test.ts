import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { readAll } from '../../src/image/content.js';
import { BlobMismatchError, sha256 } from '../../src/image/digest.js';
import { parseUploadRange } from '../../src/registry/blob-upload.js';
import { redactUrl, scrub } from '../../src/registry/redact.js';
import { SourceCursor } from '../../src/registry/source-cursor.js';
import { isLoopbackHost, parseRetryAfter } from '../../src/registry/transport.js';

test('parseRetryAfter: seconds, HTTP dates, garbage', () => {
  const now = Date.parse('Sat, 28 Nov 2026 20:00:00 GMT');
  assert.equal(parseRetryAfter('3', now), 3000);
  assert.equal(parseRetryAfter(['0'], now), 0);
  assert.equal(parseRetryAfter('Sat, 28 Nov 2026 20:00:05 GMT', now), 5000);
  assert.equal(parseRetryAfter('Sat, 28 Nov 2026 19:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter(undefined, now), undefined);
});

test('isLoopbackHost', () => {
  for (const h of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:5000', '[::1]']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['registry.example', '10.0.0.1:5000', '128.0.0.1', 'localhost.example:5000', '[::2]:5000']) assert.ok(!isLoopbackHost(h), h);
});

test('parseUploadRange', () => {
  assert.equal(parseUploadRange('0-1023'), 1024);
  assert.equal(parseUploadRange('bytes=0-99'), 100);
  assert.equal(parseUploadRange('0-0'), 0);
  assert.equal(parseUploadRange(undefined), undefined);
  assert.equal(parseUploadRange('nonsense'), undefined);
});

test('redactUrl hides credentials and signatures but keeps what helps debugging', () => {
  const u = redactUrl('https://user:pw@s3.example/bucket/blob?X-Amz-Signature=abc123&X-Amz-Credential=AKIA&digest=sha256:1');
  assert.ok(!u.includes('pw'));
  assert.ok(!u.includes('abc123'));
  assert.ok(!u.includes('AKIA'));
  assert.match(u, /digest=sha256%3A1|digest=sha256:1/);
  assert.ok(!redactUrl('https://r/v2/x/blobs/uploads/u?_state=LONGSTATE').includes('LONGSTATE'));
  assert.equal(scrub('token abcdef and abcdef', ['abcdef']), 'token [redacted] and [redacted]');
});

test('SourceCursor streams exact-length bodies, reopens only to go back, and checks the end', async () => {
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  const desc = { digest: sha256(data), size: data.length };
  const cursor = new SourceCursor(async () => Readable.from([data.subarray(0, 333), data.subarray(333, 700), data.subarray(700)]), desc, 'mem');
  let sent = 0;
  const body = async (n: number) => readAll(await cursor.body(n, (k) => (sent += k)), 1 << 20);
  assert.ok((await body(100)).equals(data.subarray(0, 100)));
  assert.ok((await body(400)).equals(data.subarray(100, 500)), 'a body spans the source\'s pieces');
  assert.equal(sent, 500);
  await cursor.seek(500); // where it is: no reopen
  assert.equal(cursor.opens, 1);
  await cursor.seek(150); // back: reopen and skip
  assert.equal(cursor.opens, 2);
  assert.ok((await body(50)).equals(data.subarray(150, 200)));
  await cursor.seek(900); // forward: skip
  assert.ok((await body(100)).equals(data.subarray(900)));
  await cursor.finish();
  cursor.close();

  // A source that ends early fails the body that wanted more, and finish() notices surplus bytes.
  const short = new SourceCursor(async () => Readable.from([data.subarray(0, 600)]), desc, 'mem');
  await assert.rejects(async () => readAll(await short.body(700, () => {}), 1 << 20), BlobMismatchError);
  assert.ok(short.failure instanceof BlobMismatchError, 'the source\'s failure is kept for the upload to report');
  const long = new SourceCursor(async () => Readable.from([data, Buffer.from('x')]), desc, 'mem');
  assert.ok((await long.read(1000)).equals(data));
  await assert.rejects(long.finish(), /size 1001 where 1000 was expected/);
});

test('a registry that does not speak TLS: loopback falls back to HTTP, others get a clear error', async () => {
  const http = await import('node:http');
  const { Transport } = await import('../../src/registry/transport.js');
  const server = http.createServer((_q, r) => r.end('ok')).listen(0, '127.0.0.1');
  await new Promise((r) => server.on('listening', r));
  const port = (server.address() as { port: number }).port;
  try {
    const lines: string[] = [];
    const reporter = { start: () => ({ advance() {}, reset() {}, done() {}, fail() {} }), info() {}, debug: (m: string) => void lines.push(m), close() {} };
    const loop = new Transport(`127.0.0.1:${port}`, { reporter });
    const res = await loop.send({ method: 'GET', url: '/' });
    assert.equal(await res.text(), 'ok');
    assert.equal(loop.baseUrl, `http://127.0.0.1:${port}`);
    assert.ok(lines.some((l) => l.includes('does not speak TLS')));
    await loop.close();
    // The same server under a name that is not loopback: no silent downgrade.
    const remote = new Transport(`127.0.0.1:${port}`, { maxAttempts: 1 });
    (remote as unknown as { mayFallBack: boolean }).mayFallBack = false;
    await assert.rejects(remote.send({ method: 'GET', url: '/' }), (e: Error & { kind?: string }) => {
      assert.equal(e.kind, 'network');
      assert.equal(e.message, `TLS handshake with 127.0.0.1:${port} failed (wrong version number); if it serves plain HTTP, use --plain-http`);
      return true;
    });
    await remote.close();
  } finally {
    server.close();
  }
});

test('UploadStateStore saves, loads, forgets stale sessions and removes', async () => {
  const { UploadStateStore } = await import('../../src/registry/upload-state.js');
  const { mkdtemp, rm, readdir, readFile, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'tarpush-state-unit-'));
  try {
    const store = new UploadStateStore(join(dir, 'nested', 'uploads'));
    const d = `sha256:${'c'.repeat(64)}`;
    assert.equal(await store.load('r', 'a', d), undefined);
    await store.save({ registry: 'r', repository: 'a', digest: d, size: 10, location: 'http://r/u?_state=x', offset: 4 });
    assert.equal((await store.load('r', 'a', d))?.offset, 4);
    assert.equal(await store.load('r', 'b', d), undefined, 'keyed by repository too');
    const [file] = await readdir(join(dir, 'nested', 'uploads'));
    const path = join(dir, 'nested', 'uploads', file!);
    const saved = JSON.parse(await readFile(path, 'utf8'));
    await writeFile(path, JSON.stringify({ ...saved, updated: '2000-01-01T00:00:00Z' }));
    assert.equal(await store.load('r', 'a', d), undefined, 'stale sessions are forgotten');
    assert.deepEqual(await readdir(join(dir, 'nested', 'uploads')), []);
    await store.save({ registry: 'r', repository: 'a', digest: d, size: 10, location: 'l', offset: 1 });
    await store.remove('r', 'a', d);
    assert.deepEqual(await readdir(join(dir, 'nested', 'uploads')), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
