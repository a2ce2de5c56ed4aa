import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, before, after } from 'node:test';
import { Agent, fetch } from 'undici';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { registryCaller, seedImage, sha256Digest, uploadBlob } from '../helpers/seed.js';

/** The registry as seen through the proxy: same users, plain HTTP at the proxy's address. */
function viaProxy(reg: TestRegistry, proxy: FaultProxy): TestRegistry {
  const { caPem: _ca, caFile: _file, ...rest } = reg;
  return { ...rest, url: proxy.url, host: proxy.host };
}

describe('fault proxy', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let blob: Buffer;
  let blobDigest: string;
  // One keep-alive client for all requests, as a real client would use.
  const dispatcher = new Agent();

  before(async () => {
    reg = await startRegistry();
    proxy = await startProxy(reg);
    blob = randomBytes(256 * 1024);
    const caller = registryCaller(reg);
    blobDigest = await uploadBlob(caller, 'harness/proxy', blob);
    await caller.close();
  });
  after(async () => {
    await dispatcher.close();
    await proxy.stop();
    await reg.stop();
  });

  const blobUrl = () => `${proxy.url}/v2/harness/proxy/blobs/${blobDigest}`;

  it('forwards requests and responses unchanged', async () => {
    const res = await fetch(blobUrl(), { dispatcher });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), blobDigest);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), blob);
  });

  it('injects a 500 once, then passes', async () => {
    const rule = proxy.addRule({ method: 'GET', path: /^\/v2\/$/, times: 1, action: { kind: 'status', status: 500 } });
    const first = await fetch(`${proxy.url}/v2/`, { dispatcher });
    await first.arrayBuffer();
    assert.equal(first.status, 500);
    const second = await fetch(`${proxy.url}/v2/`, { dispatcher });
    await second.arrayBuffer();
    assert.equal(second.status, 200);
    assert.equal(rule.hits, 1);
  });

  it('sends Retry-After with an injected 429 and honours method filters', async (t) => {
    const rule = proxy.addRule({ method: 'HEAD', path: /\/blobs\//, times: 2, action: { kind: 'status', status: 429, retryAfter: 1 } });
    t.after(() => rule.remove());
    const get = await fetch(blobUrl(), { dispatcher });
    await get.arrayBuffer();
    assert.equal(get.status, 200, 'GET does not match a HEAD rule');
    const head = await fetch(blobUrl(), { method: 'HEAD', dispatcher });
    assert.equal(head.status, 429);
    assert.equal(head.headers.get('retry-after'), '1');
    assert.equal(rule.hits, 1);
  });

  it('resets the connection part way through a response', async () => {
    proxy.addRule({ path: /\/blobs\/sha256:/, times: 1, action: { kind: 'reset-after', bytes: 1000, direction: 'response' } });
    const before = proxy.log.length;
    const res = await fetch(blobUrl(), { dispatcher });
    assert.equal(res.status, 200);
    await assert.rejects(res.arrayBuffer(), (err: Error & { cause?: { code?: string } }) => {
      assert.equal(err.cause?.code, 'ECONNRESET');
      return true;
    });
    const record = proxy.log[before]!;
    assert.equal(record.fault, 'reset-after');
    assert.equal(record.responseBytes, 1000);
    // The rule is used up: the next download is whole.
    const again = await fetch(blobUrl(), { dispatcher });
    assert.deepEqual(Buffer.from(await again.arrayBuffer()), blob);
  });

  it('resets the connection part way through a request body', async () => {
    const data = randomBytes(512 * 1024);
    const caller = registryCaller(viaProxy(reg, proxy));
    try {
      proxy.addRule({ method: 'PUT', times: 1, action: { kind: 'reset-after', bytes: 64 * 1024, direction: 'request' } });
      const before = proxy.log.length;
      await assert.rejects(uploadBlob(caller, 'harness/proxy', data), (err: Error & { cause?: { code?: string } }) => {
        assert.equal(err.cause?.code, 'ECONNRESET');
        return true;
      });
      const put = proxy.log.slice(before).find((r) => r.method === 'PUT')!;
      assert.equal(put.fault, 'reset-after');
      assert.equal(put.status, undefined, 'no status reaches a client whose connection was reset');
      assert.ok(put.requestBytes >= 64 * 1024);
      const head = await fetch(`${reg.url}/v2/harness/proxy/blobs/${sha256Digest(data)}`, { method: 'HEAD' });
      assert.equal(head.status, 404, 'the cut upload must not have completed');
    } finally {
      await caller.close();
    }
  });

  it('streams chunked PATCH bodies upstream and counts them', async () => {
    proxy.resetCounters();
    const data = randomBytes(300_000);
    const start = await fetch(`${proxy.url}/v2/harness/chunked/blobs/uploads/`, { method: 'POST', dispatcher });
    await start.arrayBuffer();
    let location = start.headers.get('location')!;
    for (const part of [data.subarray(0, 100_000), data.subarray(100_000)]) {
      // No content-length: the body goes out with Transfer-Encoding: chunked.
      const body = new ReadableStream<Uint8Array>({
        start(c) { c.enqueue(part.subarray(0, 1000)); c.enqueue(part.subarray(1000)); c.close(); },
      });
      const res = await fetch(location, {
        method: 'PATCH', body, duplex: 'half', dispatcher, headers: { 'content-type': 'application/octet-stream' },
      });
      await res.arrayBuffer();
      assert.equal(res.status, 202);
      location = res.headers.get('location')!;
      assert.ok(location.startsWith(proxy.url), location);
    }
    const put = new URL(location);
    put.searchParams.set('digest', sha256Digest(data));
    const done = await fetch(put, { method: 'PUT', dispatcher });
    await done.arrayBuffer();
    assert.equal(done.status, 201);
    assert.equal(proxy.stats({ method: 'PATCH' }).requestBytes, data.length);
    assert.equal(proxy.stats({ method: ['PATCH', 'PUT'] }).requests, 3);
    const head = await fetch(`${proxy.url}/v2/harness/chunked/blobs/${sha256Digest(data)}`, { method: 'HEAD', dispatcher });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(data.length));
  });

  it('shows what distribution 2.8 does with an upload whose PATCH was cut', async () => {
    // Facts the registry client must live with (not harness behaviour): the
    // registry keeps the partial bytes, so the upload's size no longer matches
    // the offset in every _state it handed out, and it cancels the upload on
    // the next request: resuming works only from a completed PATCH.
    const data = randomBytes(400_000);
    const start = await fetch(`${proxy.url}/v2/harness/cut/blobs/uploads/`, { method: 'POST', dispatcher });
    await start.arrayBuffer();
    const first = await fetch(start.headers.get('location')!, { method: 'PATCH', body: data.subarray(0, 100_000), dispatcher });
    await first.arrayBuffer();
    assert.equal(first.headers.get('range'), '0-99999');
    const afterFirst = first.headers.get('location')!;
    const status = await fetch(afterFirst, { dispatcher });
    await status.arrayBuffer();
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-99999');

    proxy.addRule({ method: 'PATCH', times: 1, action: { kind: 'reset-after', bytes: 50_000, direction: 'request' } });
    await assert.rejects(fetch(afterFirst, { method: 'PATCH', body: data.subarray(100_000), dispatcher }));
    // The registry notices the cut asynchronously: ask until it has.
    let poisoned = await fetch(afterFirst, { dispatcher });
    for (let i = 0; i < 40 && poisoned.status === 204; i++) {
      await poisoned.arrayBuffer();
      await new Promise((r) => setTimeout(r, 50));
      poisoned = await fetch(afterFirst, { dispatcher });
    }
    assert.equal(poisoned.status, 404);
    assert.match(await poisoned.text(), /BLOB_UPLOAD_INVALID/);
  });

  it('holds a request so a client can be killed between whole requests, and resumes', async () => {
    const data = randomBytes(400_000);
    const chunk = 100_000;
    const start = await fetch(`${proxy.url}/v2/harness/held/blobs/uploads/`, { method: 'POST', dispatcher });
    await start.arrayBuffer();
    let location = start.headers.get('location')!;
    proxy.resetCounters();
    const passed = proxy.addRule({ method: 'PATCH', times: 2, action: { kind: 'pass' } });
    proxy.addRule({ method: 'PATCH', action: { kind: 'hold' } });
    for (let i = 0; i < 2; i++) {
      const res = await fetch(location, { method: 'PATCH', body: data.subarray(i * chunk, (i + 1) * chunk), dispatcher });
      await res.arrayBuffer();
      assert.equal(res.status, 202);
      location = res.headers.get('location')!;
    }
    assert.equal(passed.hits, 2);
    // The third PATCH is held; the "client" dies while it waits.
    const abort = new AbortController();
    const third = fetch(location, { method: 'PATCH', body: data.subarray(2 * chunk, 3 * chunk), dispatcher, signal: abort.signal });
    const heldRecord = await proxy.waitFor({ method: 'PATCH', fault: 'hold' }, 5000);
    assert.equal(heldRecord.requestBytes, 0);
    abort.abort();
    await assert.rejects(third);
    proxy.clearRules();

    // A new client asks where the upload stands and goes on from there.
    const status = await fetch(location, { dispatcher });
    await status.arrayBuffer();
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), `0-${2 * chunk - 1}`);
    const rest = await fetch(status.headers.get('location')!, { method: 'PATCH', body: data.subarray(2 * chunk), dispatcher });
    await rest.arrayBuffer();
    assert.equal(rest.status, 202);
    const put = new URL(rest.headers.get('location')!);
    put.searchParams.set('digest', sha256Digest(data));
    const done = await fetch(put, { method: 'PUT', dispatcher });
    await done.arrayBuffer();
    assert.equal(done.status, 201);
    assert.equal(proxy.stats({ method: ['PATCH', 'PUT'] }).requestBytes, data.length);
  });

  it('forwards held requests on releaseHeld()', async () => {
    proxy.addRule({ path: /^\/v2\/$/, times: 1, action: { kind: 'hold' } });
    const pending = fetch(`${proxy.url}/v2/`, { dispatcher });
    await proxy.waitFor({ path: /^\/v2\/$/, fault: 'hold' }, 5000);
    proxy.releaseHeld();
    const res = await pending;
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    await assert.rejects(proxy.waitFor({ method: 'DELETE' }, 100), /no DELETE request/);
  });

  it('flips one byte of a response body', async () => {
    proxy.addRule({ method: 'GET', path: /\/blobs\//, times: 1, action: { kind: 'corrupt-response', offset: 100_000 } });
    const res = await fetch(blobUrl(), { dispatcher });
    const got = Buffer.from(await res.arrayBuffer());
    assert.equal(got.length, blob.length);
    const differing = [...got.keys()].filter((i) => got[i] !== blob[i]);
    assert.deepEqual(differing, [100_000]);
  });

  it('delays a request', async () => {
    proxy.addRule({ path: /^\/v2\/$/, times: 1, action: { kind: 'delay', ms: 300 } });
    const start = Date.now();
    const res = await fetch(`${proxy.url}/v2/`, { dispatcher });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.ok(Date.now() - start >= 290, `took ${Date.now() - start} ms`);
  });

  it('rewrites upload Locations to itself and counts body bytes per method', async () => {
    proxy.resetCounters();
    const data = randomBytes(100_000);
    const caller = registryCaller(viaProxy(reg, proxy));
    try {
      const start = await caller.fetch('/v2/harness/counted/blobs/uploads/', { method: 'POST' });
      await start.arrayBuffer();
      assert.ok(start.headers.get('location')!.startsWith(`${proxy.url}/v2/harness/counted/blobs/uploads/`),
        start.headers.get('location')!);
      await uploadBlob(caller, 'harness/counted', data);
    } finally {
      await caller.close();
    }
    assert.deepEqual(proxy.stats({ method: 'PUT' }), { requests: 1, requestBytes: data.length, responseBytes: 0 });
    assert.equal(proxy.stats({ method: ['PATCH', 'PUT'] }).requestBytes, data.length);
    assert.equal(proxy.stats({ method: 'POST', path: /\/blobs\/uploads\/$/ }).requests, 2);
    assert.equal(proxy.stats().requests, 3);
    const fetched = await fetch(`${proxy.url}/v2/harness/counted/blobs/${sha256Digest(data)}`, { dispatcher });
    await fetched.arrayBuffer();
    assert.equal(proxy.stats({ method: 'GET' }).responseBytes, data.length);
  });
});

describe('fault proxy in front of a TLS, token-auth registry', () => {
  it('speaks plain HTTP to the client and HTTPS upstream', async (t) => {
    const reg = await startRegistry({ tls: true, auth: 'token' });
    t.after(() => reg.stop());
    const proxy = await startProxy(reg);
    t.after(() => proxy.stop());
    const seeded = await seedImage(reg, 'harness/tlsproxy', 'v1');

    const anonymous = await fetch(`${proxy.url}/v2/`);
    await anonymous.arrayBuffer();
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate')!, /^Bearer realm="https:\/\/127\.0\.0\.1:\d+\/token"/);

    // The token server stays direct (HTTPS, same CA); the registry traffic goes through the proxy.
    const tokenDispatcher = new Agent({ connect: { ca: reg.caPem! } });
    t.after(() => tokenDispatcher.close());
    const tokenRes = await fetch(`${reg.tokenServer!.realm}?service=${reg.tokenServer!.service}&scope=repository:harness/tlsproxy:pull,push`, {
      dispatcher: tokenDispatcher,
      headers: { authorization: `Basic ${Buffer.from('testuser:testpassword').toString('base64')}` },
    });
    const { token } = await tokenRes.json() as { token: string };
    const manifest = await fetch(`${proxy.url}/v2/harness/tlsproxy/manifests/v1`, {
      headers: { authorization: `Bearer ${token}`, accept: seeded.mediaType },
    });
    assert.equal(manifest.status, 200);
    assert.deepEqual(Buffer.from(await manifest.arrayBuffer()), seeded.manifest);

    const upload = await fetch(`${proxy.url}/v2/harness/tlsproxy/blobs/uploads/`, {
      method: 'POST', headers: { authorization: `Bearer ${token}` },
    });
    await upload.arrayBuffer();
    assert.equal(upload.status, 202);
    assert.ok(upload.headers.get('location')!.startsWith(`${proxy.url}/`), upload.headers.get('location')!);
  });
});
