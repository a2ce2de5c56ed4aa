import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { readAll, readContent } from '../../src/image/content.js';
import { BlobMismatchError, sha256 } from '../../src/image/digest.js';
import { openRegistry, parseReference, resolveRemote, RegistryTarget } from '../../src/registry/index.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { registryCaller } from '../helpers/seed.js';
import { RecordingProgress, makeImage, pushGraph, tempDir } from './fixtures.js';

const exec = promisify(execFile);
let reg: TestRegistry;
let proxy: FaultProxy;
let state: { path: string; remove(): Promise<void> };

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

test('pushes an image graph (monolithic and chunked blobs) that skopeo and raw GETs agree on', async () => {
  const img = makeImage([200_000, 3000]);
  const client = openRegistry(parseReference(`${proxy.host}/team/app`), { chunkSize: 64 * 1024, stateDir: state.path, access: 'push' });
  const target = new RegistryTarget(client);
  const progress = new Map<string, RecordingProgress>();
  try {
    proxy.resetCounters();
    await pushGraph(img.root, target, 'v1', (d) => {
      const p = new RecordingProgress();
      progress.set(d.digest, p);
      return p;
    });
    // 200 000 bytes in 64 KiB chunks: 4 PATCHes and an empty final PUT; the small blobs are single PUTs.
    assert.equal(proxy.stats({ method: 'PATCH' }).requests, 4);
    assert.equal(proxy.stats({ method: 'PATCH' }).requestBytes, 200_000);
    assert.equal(proxy.stats({ method: 'PUT', path: /blobs/ }).requestBytes, 3000 + img.config.length);
    assert.equal(progress.get(sha256(img.layers[0]!))!.sent, 200_000);
    assert.equal(await target.remoteDigest('v1'), img.manifestDesc.digest);
    assert.deepEqual(await readdir(state.path).catch(() => []), [], 'no upload state left behind');
  } finally {
    await target.close();
  }

  const caller = registryCaller(reg);
  try {
    const m = await caller.fetch('/v2/team/app/manifests/v1', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(m.status, 200);
    assert.deepEqual(Buffer.from(await m.arrayBuffer()), img.manifest);
    for (const layer of img.layers) {
      const b = await caller.fetch(`/v2/team/app/blobs/${sha256(layer)}`);
      assert.equal(sha256(Buffer.from(await b.arrayBuffer())), sha256(layer));
    }
  } finally {
    await caller.close();
  }

  const { stdout } = await exec('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/team/app:v1`]);
  const info = JSON.parse(stdout) as { Digest: string; Layers: string[] };
  assert.equal(info.Digest, img.manifestDesc.digest);
  assert.deepEqual(info.Layers, img.layers.map((l) => sha256(l)));
});

test('a second push finds everything present and sends no blob bytes', async () => {
  const img = makeImage([50_000]);
  const ref = parseReference(`${proxy.host}/again/app:1`);
  for (let run = 0; run < 2; run++) {
    const target = new RegistryTarget(openRegistry(ref, { stateDir: state.path, access: 'push' }));
    proxy.resetCounters();
    try {
      await pushGraph(img.root, target, '1');
    } finally {
      await target.close();
    }
    if (run === 1) {
      assert.equal(proxy.stats({ method: ['PATCH', 'POST'] }).requests, 0);
      assert.equal(proxy.stats({ method: 'PUT', path: /blobs/ }).requests, 0);
    }
  }
});

test('pulls back by tag and by digest, verifying every blob', async () => {
  const img = makeImage([120_000, 10]);
  const ref = parseReference(`${reg.host}/pull/app:t`);
  const target = new RegistryTarget(openRegistry(ref, { access: 'push', stateDir: state.path }));
  try {
    await pushGraph(img.root, target, 't');
  } finally {
    await target.close();
  }
  for (const r of [ref, { ...ref, tag: undefined, digest: img.manifestDesc.digest }]) {
    const remote = await resolveRemote(r as typeof ref);
    try {
      assert.equal(remote.digest, img.manifestDesc.digest);
      assert.equal(remote.mediaType, img.manifestDesc.mediaType);
      assert.deepEqual(await readContent(remote.root), img.manifest);
      const children = await remote.root.children();
      assert.equal(children.length, 3);
      const bytes = await Promise.all(children.map(async (c) => readAll(await c.open(), 1 << 30)));
      assert.deepEqual(bytes, [img.config, ...img.layers]);
    } finally {
      await remote.close();
    }
  }
});

test('pull by a digest that is not there is a registry error naming it', async () => {
  const ref = parseReference(`${reg.host}/pull/app@sha256:${'0'.repeat(64)}`);
  await assert.rejects(resolveRemote(ref), (e: Error & { kind?: string }) => {
    assert.equal(e.kind, 'registry');
    assert.match(e.message, /pull\/app: manifest sha256:0+ not found \(MANIFEST_UNKNOWN/);
    return true;
  });
});

test('a blob whose bytes do not match aborts the upload and finalises nothing', async () => {
  const img = makeImage([150_000, 40_000]);
  // Same length, different bytes: only the digest check at the end can notice.
  for (const layer of img.layers) {
    const bad = Buffer.from(layer);
    bad[bad.length - 1]! ^= 1;
    img.reader.tampered.set(sha256(layer), bad);
  }
  const client = openRegistry(parseReference(`${proxy.host}/bad/app`), { chunkSize: 64 * 1024, stateDir: state.path, access: 'push' });
  const target = new RegistryTarget(client);
  try {
    for (const layer of img.layers) {
      const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar', size: layer.length, digest: sha256(layer) };
      const { contentFromDescriptor } = await import('../../src/image/content.js');
      const node = contentFromDescriptor(desc, img.reader);
      proxy.resetCounters();
      await assert.rejects(target.putBlob(desc, () => node.open()), (e: unknown) => {
        assert.ok(e instanceof BlobMismatchError, String(e));
        assert.match((e as Error).message, /does not match its descriptor/);
        return true;
      });
      assert.equal(await target.exists(desc), false);
      // Nothing was finalised: no PUT ?digest= reached the registry.
      assert.equal(proxy.stats({ method: 'PUT' }).requests, 0);
    }
    assert.deepEqual(await readdir(state.path).catch(() => []), []);
  } finally {
    await target.close();
  }
});

test('registry errors are mapped to one-line messages with the registry code', async () => {
  const img = makeImage([10]);
  const client = openRegistry(parseReference(`${reg.host}/errs/app`), { stateDir: state.path, access: 'push' });
  try {
    // A manifest whose blobs were never pushed.
    await assert.rejects(client.putManifest('x', img.manifest, img.manifestDesc.mediaType), (e: Error & { kind?: string }) => {
      assert.equal(e.kind, 'registry');
      assert.match(e.message, /^127\.0\.0\.1:\d+\/errs\/app: pushing manifest x: MANIFEST_BLOB_UNKNOWN: blob unknown to registry/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  } finally {
    await client.close();
  }
});
