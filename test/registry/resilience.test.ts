import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { after, before, beforeEach, test } from 'node:test';
import { contentFromDescriptor, readAll } from '../../src/image/content.js';
import { sha256 } from '../../src/image/digest.js';
import { TarpushError } from '../../src/errors.js';
import { openRegistry, parseReference, RegistryTarget, type RegistryOptions } from '../../src/registry/index.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { RecordingProgress, capturingReporter, makeImage, pushGraph, tempDir } from './fixtures.js';

let reg: TestRegistry;
let proxy: FaultProxy;
let state: { path: string; remove(): Promise<void> };
const CHUNK = 64 * 1024;

before(async () => {
  reg = await startRegistry();
  proxy = await startProxy({ url: reg.url });
  state = await tempDir('tarpush-state-');
});
after(async () => {
  await proxy?.stop();
  await reg?.stop();
  await state?.remove();
});
beforeEach(() => {
  proxy.clearRules();
  proxy.resetCounters();
});

function client(repo: string, opts: RegistryOptions = {}) {
  return openRegistry(parseReference(`${proxy.host}/${repo}`), {
    stateDir: state.path,
    access: 'push',
    chunkSize: CHUNK,
    retryBaseMs: 20,
    ...opts,
  });
}

function layerOf(size: number) {
  const img = makeImage([size]);
  const data = img.layers[0]!;
  const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar', size: data.length, digest: sha256(data) };
  const node = contentFromDescriptor(desc, img.reader);
  return { data, desc, open: () => node.open(), reader: img.reader };
}

test('retries injected 500s and 429 (honouring Retry-After) and reports each retry', async () => {
  const reporter = capturingReporter();
  const c = client('retry/app', { reporter });
  const { desc, open } = layerOf(1000);
  try {
    proxy.addRule({ method: 'HEAD', times: 2, action: { kind: 'status', status: 500 } });
    assert.equal(await c.headBlob(desc.digest), undefined);
    assert.equal(proxy.stats({ method: 'HEAD' }).requests, 3);
    assert.equal(reporter.lines.filter((l) => /HEAD .* got 500; retry/.test(l)).length, 2);
    assert.ok(reporter.lines.some((l) => /does not speak TLS; using plain HTTP/.test(l)), 'loopback fell back to HTTP');

    proxy.addRule({ method: 'POST', times: 1, action: { kind: 'status', status: 429, retryAfter: 1 } });
    const t0 = Date.now();
    await c.uploadBlob(desc, open);
    assert.ok(Date.now() - t0 >= 950, 'waited for Retry-After');
    assert.ok(reporter.lines.some((l) => /POST .* got 429; retry 1\/4 in 1000 ms/.test(l)), reporter.lines.join('\n'));
    assert.notEqual(await c.headBlob(desc.digest), undefined);
  } finally {
    await c.close();
  }
});

test('gives up after bounded attempts with a registry error', async () => {
  const c = client('retry/give-up', { maxAttempts: 3 });
  try {
    proxy.addRule({ method: 'GET', path: /manifests/, action: { kind: 'status', status: 503 } });
    await assert.rejects(c.getManifest('latest'), (e: unknown) => {
      assert.ok(e instanceof TarpushError);
      assert.equal(e.kind, 'registry');
      assert.match(e.message, /retry\/give-up: fetching manifest latest: HTTP 503 \(retries exhausted\): .*injected 503$/);
      return true;
    });
    assert.equal(proxy.stats({ method: 'GET', path: /manifests/ }).requests, 3);
  } finally {
    await c.close();
  }
});

test('a dropped connection is retried', async () => {
  const img = makeImage([1000]);
  const c = client('retry/reset');
  const target = new RegistryTarget(c);
  try {
    await pushGraph(img.root, target, 'v1');
    proxy.resetCounters();
    proxy.addRule({ method: 'GET', path: /manifests/, times: 1, action: { kind: 'reset-after', bytes: 10, direction: 'response' } });
    const m = await c.getManifest('v1');
    assert.ok(m.bytes.equals(img.manifest));
    assert.equal(proxy.stats({ method: 'GET', path: /manifests/ }).requests, 2);
  } finally {
    await c.close();
  }
});

test('a download that breaks resumes with a Range request and yields one seamless stream', async () => {
  const c = client('dl/app');
  const { data, desc, open } = layerOf(300_000);
  try {
    await c.uploadBlob(desc, open);
    proxy.resetCounters();
    proxy.addRule({ method: 'GET', path: /blobs\/sha256/, times: 2, action: { kind: 'reset-after', bytes: 100_000, direction: 'response' } });
    const got = await readAll(await c.openBlob(desc), 1 << 30);
    assert.equal(got.length, data.length);
    assert.ok(got.equals(data));
    const gets = proxy.log.filter((r) => r.method === 'GET' && /blobs\/sha256/.test(r.path));
    assert.equal(gets.length, 3);
    // Only the missing tail is fetched again: 100 000 + 100 000 + 100 000.
    assert.ok(proxy.stats({ method: 'GET', path: /blobs\/sha256/ }).responseBytes <= 300_000 + 1000);
  } finally {
    await c.close();
  }
});

test('an upload recovers within the run from a 500 and a 416 on chunks', async () => {
  const c = client('up/500');
  const { desc, open } = layerOf(300_000);
  const progress = new RecordingProgress();
  try {
    proxy.addRule({ method: 'PATCH', times: 1, action: { kind: 'status', status: 500 } });
    proxy.addRule({ method: 'PATCH', times: 1, action: { kind: 'status', status: 416 } });
    const r = await c.uploadBlob(desc, open, progress);
    assert.equal(proxy.stats({ method: 'GET', path: /uploads/ }).requests, 2, 'asked for the status after each failure');
    assert.equal(r.how, 'uploaded');
    assert.notEqual(await c.headBlob(desc.digest), undefined);
    assert.equal(progress.sent, 300_000);
    assert.ok(progress.resets.length >= 2, 'progress reset on recovery');
  } finally {
    await c.close();
  }
});

test('chunks grow to the registry\'s OCI-Chunk-Min-Length', async () => {
  const c = client('up/chunkmin');
  const { desc, open } = layerOf(6 * CHUNK + 123);
  try {
    proxy.resetCounters();
    proxy.addRule({ method: 'POST', path: /\/blobs\/uploads\/$/, times: 1, action: { kind: 'add-headers', headers: { 'OCI-Chunk-Min-Length': String(4 * CHUNK) } } });
    await c.uploadBlob(desc, open);
    proxy.clearRules();
    const patches = proxy.log.filter((r) => r.method === 'PATCH').map((r) => r.requestBytes);
    assert.deepEqual(patches, [4 * CHUNK, 2 * CHUNK + 123], 'two PATCHes of at least the minimum, not seven of the configured size');
    assert.notEqual(await c.headBlob(desc.digest), undefined);
  } finally {
    await c.close();
  }
});

test('an upload that keeps failing gives up with a registry error and keeps its session', async () => {
  const c = client('up/503');
  const { desc, open } = layerOf(3 * CHUNK);
  try {
    proxy.addRule({ method: 'PATCH', action: { kind: 'status', status: 503 } });
    await assert.rejects(c.uploadBlob(desc, open), (e: unknown) => {
      assert.ok(e instanceof TarpushError);
      assert.equal(e.kind, 'registry');
      assert.match(e.message, /up\/503: uploading blob sha256:[0-9a-f]{64}: HTTP 503 \(retries exhausted\)$/);
      return true;
    });
    assert.equal(proxy.stats({ method: 'PATCH' }).requests, 6);
    assert.equal((await readdir(state.path)).length, 1);
    proxy.clearRules();
    await c.uploadBlob(desc, open);
    assert.deepEqual(await readdir(state.path), []);
  } finally {
    await c.close();
  }
});

test('when the registry drops a broken upload session the upload starts over and completes', async () => {
  // distribution 2.8 cancels a session whose PATCH broke mid-body (its size no longer matches).
  const c = client('up/restart');
  const { desc, open } = layerOf(300_000);
  try {
    proxy.addRule({ method: 'PATCH', times: 1, action: { kind: 'reset-after', bytes: 100_000, direction: 'request' } });
    await c.uploadBlob(desc, open);
    assert.notEqual(await c.headBlob(desc.digest), undefined);
    assert.deepEqual(await readdir(state.path), []);
  } finally {
    await c.close();
  }
});

/** A source of `data` that fails after `bytes` bytes, as when reading the input breaks. */
function dyingAfter(data: Buffer, bytes: number) {
  return (): Promise<Readable> =>
    Promise.resolve(
      Readable.from(
        (async function* () {
          for (let i = 0; i < bytes; i += 8192) yield data.subarray(i, Math.min(i + 8192, bytes));
          throw new Error('interrupted');
        })(),
      ),
    );
}

test('an upload whose source dies between chunks resumes in the next run from the confirmed offset', async () => {
  const SIZE = 10 * CHUNK + 5000;
  const { data, desc, reader } = layerOf(SIZE);
  // Run 1: the source dies after exactly 5 chunks: the sixth chunk's request is never started.
  const c1 = client('up/resume');
  try {
    await assert.rejects(c1.uploadBlob(desc, dyingAfter(data, 5 * CHUNK)), /interrupted/);
  } finally {
    await c1.close();
  }
  assert.equal((await readdir(state.path)).length, 1, 'upload state kept for the next run');
  const firstRun = proxy.stats({ method: ['PATCH', 'PUT'] });
  assert.equal(firstRun.requestBytes, 5 * CHUNK);
  assert.equal(firstRun.requests, 5, 'no request for the chunk the source could not provide');

  proxy.resetCounters();
  const c2 = client('up/resume');
  const progress = new RecordingProgress();
  try {
    const node = contentFromDescriptor(desc, reader);
    const r = await c2.uploadBlob(desc, () => node.open(), progress);
    assert.equal(r.resumedFrom, 5 * CHUNK);
    assert.equal(progress.resets[0], 5 * CHUNK);
    assert.equal(progress.sent, SIZE);
  } finally {
    await c2.close();
  }
  const secondRun = proxy.stats({ method: ['PATCH', 'PUT'] }).requestBytes;
  assert.equal(secondRun, SIZE - 5 * CHUNK);
  assert.deepEqual(await readdir(state.path), [], 'state removed once complete');
  const check = client('up/resume');
  try {
    assert.ok((await readAll(await check.openBlob(desc), 1 << 30)).equals(data));
  } finally {
    await check.close();
  }
});

test('an upload whose source dies mid-chunk fails with the source error; the next run still completes', async () => {
  // Chunks stream, so half of the sixth chunk has left when the source dies. The CNCF registry
  // then cancels the session (docs/DESIGN.md): the rerun finds it gone and starts over.
  const SIZE = 10 * CHUNK + 5000;
  const { data, desc, open } = layerOf(SIZE);
  const c1 = client('up/resume-mid');
  try {
    await assert.rejects(c1.uploadBlob(desc, dyingAfter(data, 5.5 * CHUNK)), /interrupted/);
  } finally {
    await c1.close();
  }
  assert.equal(proxy.stats({ method: 'PUT' }).requests, 0, 'nothing committed');
  proxy.resetCounters();
  const c2 = client('up/resume-mid');
  try {
    const r = await c2.uploadBlob(desc, open);
    assert.ok(r.resumedFrom === 0 || r.resumedFrom === 5 * CHUNK, `resumed from ${r.resumedFrom}`);
    assert.equal(proxy.stats({ method: ['PATCH', 'PUT'] }).requestBytes, SIZE - r.resumedFrom);
    assert.ok((await readAll(await c2.openBlob(desc), 1 << 30)).equals(data));
  } finally {
    await c2.close();
  }
  assert.deepEqual(await readdir(state.path), [], 'state removed once complete');
});

test('an upload cut off by the network resumes in the next run (proxy resets, byte counters)', async () => {
  const SIZE = 10 * CHUNK;
  const { desc, open } = layerOf(SIZE);
  const progress = new RecordingProgress();
  let armed = false;
  const watch = {
    advance(n: number) {
      progress.advance(n);
      // While chunk 6 streams, cut every later PATCH before any of its bytes arrive.
      if (!armed && progress.sent > 5 * CHUNK) {
        armed = true;
        proxy.addRule({ method: 'PATCH', action: { kind: 'reset-after', bytes: 0, direction: 'request' } });
      }
    },
    reset: (n?: number) => progress.reset(n),
    done() {},
    fail() {},
  };
  const c1 = client('up/net', { maxAttempts: 2 });
  try {
    await assert.rejects(c1.uploadBlob(desc, open, watch), (e: unknown) => e instanceof TarpushError && e.kind === 'network');
  } finally {
    await c1.close();
  }
  const total = proxy.stats({ method: ['PATCH', 'PUT'] }).requestBytes;
  assert.ok(total >= 5 * CHUNK);
  proxy.clearRules();
  proxy.resetCounters();
  const c2 = client('up/net');
  try {
    const r = await c2.uploadBlob(desc, open);
    assert.ok(r.resumedFrom >= 5 * CHUNK, `resumed from ${r.resumedFrom}`);
    assert.notEqual(await c2.headBlob(desc.digest), undefined);
  } finally {
    await c2.close();
  }
  const second = proxy.stats({ method: ['PATCH', 'PUT'] }).requestBytes;
  assert.ok(second <= SIZE / 2, `second run sent ${second} of ${SIZE}`);
});

test('a mount refused by the registry falls back to an upload', async () => {
  const c = client('mount/dst');
  const { desc, open } = layerOf(2000);
  const target = new RegistryTarget(c, { mountFrom: ['mount/nowhere'] });
  try {
    await target.putBlob(desc, open);
    assert.equal(target.results.get(desc.digest)!.how, 'uploaded');
    // The session the refused mount opened was used: one POST in all.
    assert.equal(proxy.stats({ method: 'POST' }).requests, 1);
    assert.ok(await target.exists(desc));
  } finally {
    await target.close();
  }
});
