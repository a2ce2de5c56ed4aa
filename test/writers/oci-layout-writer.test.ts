import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { OciLayoutTarget } from '../../src/formats/oci-layout-writer.js';
import { Annotation } from '../../src/image/descriptor.js';
import { sha256 } from '../../src/image/digest.js';
import { blobPath, makeImage, makeIndex, makeLayer, memoryContent, pushImage, pushIndex, readJson, removeDir, tempDir } from './util.js';

const dirs: string[] = [];
after(() => dirs.forEach(removeDir));
function newDir(): string {
  const d = tempDir('tarpush-layout-');
  dirs.push(d);
  return d;
}

function tmpLeftovers(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.startsWith('.tmp-')) out.push(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

describe('OciLayoutTarget', () => {
  it('creates a layout skopeo can read, with the tag as ref name', async () => {
    const dir = join(newDir(), 'new', 'layout');
    const img = makeImage([await makeLayer({ 'a.txt': 'hello' }), await makeLayer({ 'b.txt': 'world' })]);
    const target = new OciLayoutTarget(dir);
    assert.equal(await target.exists(img.manifest.desc), false);
    await pushImage(target, img, 'v1');
    assert.deepEqual(readJson(join(dir, 'oci-layout')), { imageLayoutVersion: '1.0.0' });
    const index = readJson(join(dir, 'index.json'));
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0].digest, img.manifest.desc.digest);
    assert.equal(index.manifests[0].annotations[Annotation.refName], 'v1');
    for (const [digest, bytes] of img.blobs) assert.deepEqual(readFileSync(blobPath(dir, digest)), bytes);
    assert.equal(await target.exists(img.manifest.desc), true);
    assert.deepEqual(tmpLeftovers(dir), []);
    assert.equal(sha256(execFileSync('skopeo', ['inspect', '--raw', `oci:${dir}:v1`])), img.manifest.desc.digest);
    const inspected = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${dir}:v1`]).toString());
    assert.equal(inspected.Digest, img.manifest.desc.digest);
    assert.equal(inspected.Layers.length, 2);
  });

  it('adds to an existing layout and replaces an entry with the same ref name', async () => {
    const dir = newDir();
    const a = makeImage([await makeLayer({ 'a.txt': 'a' })], { label: 'a' });
    const b = makeImage([await makeLayer({ 'b.txt': 'b' })], { label: 'b' });
    await pushImage(new OciLayoutTarget(dir), a, 'v1');
    // A second target object on the same directory: it must keep what is there.
    const target = new OciLayoutTarget(dir);
    await pushImage(target, b, 'v2');
    let index = readJson(join(dir, 'index.json'));
    assert.deepEqual(
      index.manifests.map((m: any) => [m.annotations[Annotation.refName], m.digest]),
      [
        ['v1', a.manifest.desc.digest],
        ['v2', b.manifest.desc.digest],
      ],
    );
    await target.putManifest(b.manifest.desc, b.manifest.bytes, 'v1');
    index = readJson(join(dir, 'index.json'));
    assert.deepEqual(
      index.manifests.map((m: any) => [m.annotations[Annotation.refName], m.digest]),
      [
        ['v2', b.manifest.desc.digest],
        ['v1', b.manifest.desc.digest],
      ],
    );
    // a's blobs stay (a layout writer never deletes), b's tag v1 is now what skopeo resolves.
    const inspected = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${dir}:v1`]).toString());
    assert.equal(inspected.Digest, b.manifest.desc.digest);
  });

  it('records the descriptor as given (platform) and extra annotations via addRoot', async () => {
    const dir = newDir();
    const amd = makeImage([await makeLayer({ 'x': 'amd' })]);
    const arm = makeImage([await makeLayer({ 'x': 'arm' })], { platform: { os: 'linux', architecture: 'arm64' } });
    const idx = makeIndex([amd, arm]);
    const target = new OciLayoutTarget(dir);
    await pushIndex(target, idx);
    await target.addRoot(idx.index.desc, { [Annotation.refName]: 'multi', [Annotation.containerdName]: 'registry.example/team/app:multi' });
    const withPlatform = { ...amd.manifest.desc, platform: { architecture: 'amd64', os: 'linux' } };
    await target.addRoot(withPlatform, { [Annotation.refName]: 'amd' });
    await target.addRoot(amd.manifest.desc);
    await target.addRoot(amd.manifest.desc); // untagged twice: one entry
    const entries = readJson(join(dir, 'index.json')).manifests;
    assert.equal(entries.length, 3);
    assert.deepEqual(entries[0].annotations, {
      [Annotation.refName]: 'multi',
      [Annotation.containerdName]: 'registry.example/team/app:multi',
    });
    assert.deepEqual(entries[1].platform, { architecture: 'amd64', os: 'linux' });
    assert.equal(entries[2].annotations, undefined);
    const raw = execFileSync('skopeo', ['inspect', '--raw', `oci:${dir}:multi`]);
    assert.equal(sha256(raw), idx.index.desc.digest);
  });

  it('writes each blob once and skips blobs already present with the right size', async () => {
    const dir = newDir();
    const shared = await makeLayer({ 'shared.txt': 'x'.repeat(5000) });
    const a = makeImage([shared, await makeLayer({ a: '1' })], { label: 'a' });
    const b = makeImage([shared, await makeLayer({ b: '2' })], { label: 'b' });
    const target = new OciLayoutTarget(dir);
    let opens = 0;
    const open = () => {
      opens++;
      return memoryContent(shared.desc, a.blobs).open();
    };
    await Promise.all([target.putBlob(shared.desc, open), target.putBlob(shared.desc, open), pushImage(target, a, 'a')]);
    const before = statSync(blobPath(dir, shared.desc.digest)).mtimeMs;
    await target.putBlob(shared.desc, open);
    await pushImage(target, b, 'b');
    assert.equal(statSync(blobPath(dir, shared.desc.digest)).mtimeMs, before);
    assert.ok(opens <= 1, `opened ${opens} times`);
    // A truncated leftover of the wrong size is replaced.
    writeFileSync(blobPath(dir, shared.desc.digest), 'short');
    assert.equal(await target.exists(shared.desc), false);
    await target.putBlob(shared.desc, open);
    assert.deepEqual(readFileSync(blobPath(dir, shared.desc.digest)), shared.bytes);
    assert.deepEqual(tmpLeftovers(dir), []);
  });

  it('leaves no partial blob or temp file when the source stream fails', async () => {
    const dir = newDir();
    const layer = await makeLayer({ big: Buffer.alloc(200_000, 7) }, 'none');
    const target = new OciLayoutTarget(dir);
    const failing = async () =>
      Readable.from(
        (async function* () {
          yield layer.bytes.subarray(0, 50_000);
          throw new Error('connection reset');
        })(),
      );
    await assert.rejects(target.putBlob(layer.desc, failing), /connection reset/);
    assert.equal(await target.exists(layer.desc), false);
    assert.deepEqual(tmpLeftovers(dir), []);
    // A corrupt stream (wrong digest) is refused by the verifying Content and leaves nothing.
    const wrong = Buffer.from(layer.bytes);
    wrong[100] ^= 1;
    await assert.rejects(
      target.putBlob(layer.desc, () => memoryContent(layer.desc, new Map([[layer.desc.digest, wrong]])).open()),
      /does not match/,
    );
    assert.equal(await target.exists(layer.desc), false);
    assert.deepEqual(tmpLeftovers(dir), []);
  });

  it('rewrites index.json atomically under concurrent tags', async () => {
    const dir = newDir();
    const target = new OciLayoutTarget(dir);
    const img = makeImage([await makeLayer({ a: 'a' })]);
    await pushImage(target, img);
    await Promise.all(Array.from({ length: 20 }, (_, i) => target.putManifest(img.manifest.desc, img.manifest.bytes, `t${i}`)));
    const entries = readJson(join(dir, 'index.json')).manifests;
    assert.equal(entries.length, 20);
    assert.deepEqual(new Set(entries.map((e: any) => e.annotations[Annotation.refName])).size, 20);
    assert.deepEqual(tmpLeftovers(dir), []);
  });

  it('refuses to turn a non-empty directory that is not a layout into one', async () => {
    const dir = newDir();
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    const img = makeImage([await makeLayer({ a: 'a' })]);
    await assert.rejects(pushImage(new OciLayoutTarget(dir), img, 'v1'), /is not empty and is not an OCI layout/);
    assert.deepEqual(readdirSync(dir), ['notes.txt']);
  });

  it('refuses manifest bytes that do not match the descriptor', async () => {
    const dir = newDir();
    const img = makeImage([await makeLayer({ a: 'a' })]);
    await assert.rejects(new OciLayoutTarget(dir).putManifest(img.manifest.desc, Buffer.from('{}'), 'x'), /do not match/);
  });
});

describe('OciLayoutTarget output verified by the verify engine', () => {
  it('passes verify with no warnings after several pushes and a re-tag', async () => {
    const { verifyImages } = await import('../../src/verify/index.js');
    const { contentFromDescriptor } = await import('../../src/image/content.js');
    const { DirBlobReader, DirTree } = await import('./util.js');
    const dir = newDir();
    const target = new OciLayoutTarget(dir);
    const amd = makeImage([await makeLayer({ f: 'amd' }, 'zstd'), await makeLayer({ g: 'plain' }, 'none')]);
    const arm = makeImage([await makeLayer({ f: 'arm' })], { platform: { os: 'linux', architecture: 'arm64' } });
    await pushIndex(target, makeIndex([amd, arm]), 'multi');
    await pushImage(target, amd, 'amd');
    const index = readJson(join(dir, 'index.json'));
    const reader = new DirBlobReader(dir);
    const report = await verifyImages(
      index.manifests.map((d: any) => contentFromDescriptor(d, reader)),
      { where: dir, tree: new DirTree(dir) },
    );
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.warnings, []);
    assert.equal(report.checked.layers, 3);
  });
});
