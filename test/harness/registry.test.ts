import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it, before, after } from 'node:test';
import { promisify } from 'node:util';
import { fetch } from 'undici';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { registryCaller, seedImage, sha256Digest, uploadBlob } from '../helpers/seed.js';

const run = promisify(execFile);

describe('plain HTTP registry', () => {
  let reg: TestRegistry;
  before(async () => { reg = await startRegistry(); });
  after(async () => { await reg.stop(); });

  it('answers /v2/ with 200 and the API version header', async () => {
    assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
    assert.equal(reg.url, `http://${reg.host}`);
    const res = await fetch(`${reg.url}/v2/`);
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  });

  it('takes a monolithic blob upload and serves it back', async () => {
    const caller = registryCaller(reg);
    try {
      const data = Buffer.from('hello blob');
      const digest = await uploadBlob(caller, 'harness/blob', data);
      assert.equal(digest, sha256Digest(data));
      const head = await caller.fetch(`/v2/harness/blob/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(data.length));
      const get = await caller.fetch(`/v2/harness/blob/blobs/${digest}`);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
    } finally {
      await caller.close();
    }
  });

  it('stores a manifest by tag and serves it byte for byte', async () => {
    const image = await seedImage(reg, 'harness/image', 'v1');
    const res = await fetch(`${reg.url}/v2/harness/image/manifests/v1`, {
      headers: { accept: image.mediaType },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), image.manifestDigest);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest);
    // The filesystem storage really is the per-registry temp dir.
    assert.ok(existsSync(`${reg.storageDir}/docker/registry/v2/repositories/harness/image`));
  });

  it('is readable by skopeo', async () => {
    const image = await seedImage(reg, 'harness/skopeo', 'latest');
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/harness/skopeo:latest`]);
    const info = JSON.parse(stdout) as { Digest: string; Layers: string[] };
    assert.equal(info.Digest, image.manifestDigest);
    assert.deepEqual(info.Layers, image.layers.map((l) => l.digest));
  });
});

describe('registry lifecycle', () => {
  it('runs several registries side by side and cleans up after stop', async () => {
    const regs = await Promise.all([startRegistry(), startRegistry(), startRegistry()]);
    try {
      assert.equal(new Set(regs.map((r) => r.host)).size, 3);
      assert.equal(new Set(regs.map((r) => r.storageDir)).size, 3);
    } finally {
      await Promise.all(regs.map((r) => r.stop()));
    }
    for (const r of regs) {
      assert.equal(existsSync(r.storageDir), false);
      await assert.rejects(fetch(`${r.url}/v2/`));
    }
  });
});
