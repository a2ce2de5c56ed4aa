import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import { promisify } from 'node:util';
import { Agent, fetch } from 'undici';
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

describe('TLS registry', () => {
  let reg: TestRegistry;
  before(async () => { reg = await startRegistry({ tls: true }); });
  after(async () => { await reg.stop(); });

  it('serves HTTPS with a certificate from the generated CA', async () => {
    assert.equal(reg.url, `https://${reg.host}`);
    assert.ok(reg.caFile && reg.caPem);
    assert.match(await readFile(reg.caFile, 'utf8'), /BEGIN CERTIFICATE/);
    const dispatcher = new Agent({ connect: { ca: reg.caPem } });
    try {
      const res = await fetch(`${reg.url}/v2/`, { dispatcher });
      await res.arrayBuffer();
      assert.equal(res.status, 200);
      // The certificate names localhost too (SAN), not just the IP.
      const byName = await fetch(`https://localhost:${reg.host.split(':')[1]}/v2/`, { dispatcher });
      await byName.arrayBuffer();
      assert.equal(byName.status, 200);
    } finally {
      await dispatcher.close();
    }
  });

  it('is refused by a client that does not trust the CA', async () => {
    const dispatcher = new Agent();
    try {
      await assert.rejects(fetch(`${reg.url}/v2/`, { dispatcher }), (err: Error & { cause?: { code?: string } }) => {
        assert.match(String(err.cause?.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER_CERT/);
        return true;
      });
    } finally {
      await dispatcher.close();
    }
  });

  it('is readable by skopeo trusting the CA through --cert-dir', async () => {
    const image = await seedImage(reg, 'harness/tls', 'v1');
    const certDir = await mkdtemp(path.join(os.tmpdir(), 'tarpush-certdir-'));
    try {
      await copyFile(reg.caFile!, path.join(certDir, 'ca.crt'));
      const { stdout } = await run('skopeo', ['inspect', '--cert-dir', certDir, `docker://${reg.host}/harness/tls:v1`]);
      assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, image.manifestDigest);
      await assert.rejects(run('skopeo', ['inspect', `docker://${reg.host}/harness/tls:v1`]), /certificate/);
    } finally {
      await rm(certDir, { recursive: true, force: true });
    }
  });
});

describe('basic-auth registry', () => {
  let reg: TestRegistry;
  before(async () => { reg = await startRegistry({ auth: 'basic', users: { alice: 's3cret', bob: 'hunter2' } }); });
  after(async () => { await reg.stop(); });

  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  it('challenges anonymous requests with a Basic realm', async () => {
    const res = await fetch(`${reg.url}/v2/`);
    await res.arrayBuffer();
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="tarpush-test"');
  });

  it('accepts every configured user with the right password', async () => {
    for (const [user, password] of Object.entries(reg.users)) {
      const res = await fetch(`${reg.url}/v2/`, { headers: { authorization: basic(user, password) } });
      await res.arrayBuffer();
      assert.equal(res.status, 200, user);
    }
  });

  it('rejects a wrong password and an unknown user', async () => {
    for (const authorization of [basic('alice', 'wrong'), basic('mallory', 's3cret')]) {
      const res = await fetch(`${reg.url}/v2/`, { headers: { authorization } });
      await res.arrayBuffer();
      assert.equal(res.status, 401);
    }
  });

  it('lets an authenticated client push and pull', async () => {
    const image = await seedImage(reg, 'harness/basic', 'v1', { user: 'bob' });
    const anonymous = await fetch(`${reg.url}/v2/harness/basic/manifests/v1`, { headers: { accept: image.mediaType } });
    await anonymous.arrayBuffer();
    assert.equal(anonymous.status, 401);
    const res = await fetch(`${reg.url}/v2/harness/basic/manifests/v1`, {
      headers: { accept: image.mediaType, authorization: basic('bob', 'hunter2') },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest);
  });
});
