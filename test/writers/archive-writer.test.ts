import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { ArchiveTarget, splitReference } from '../../src/formats/archive-writer.js';
import { Annotation } from '../../src/image/descriptor.js';
import { sha256 } from '../../src/image/digest.js';
import { makeImage, makeIndex, makeLayer, memoryContent, pushImage, pushIndex, removeDir, tempDir, type BuiltImage } from './util.js';

const dirs: string[] = [];
after(() => dirs.forEach(removeDir));
function newDir(): string {
  const d = tempDir('tarpush-archive-');
  dirs.push(d);
  return d;
}

function skopeo(...args: string[]): string {
  return execFileSync('skopeo', ['--insecure-policy', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** Entry names in archive order, read with GNU tar (an independent reader). */
function listTar(path: string): string[] {
  return execFileSync('tar', ['-tf', path]).toString().split('\n').filter(Boolean);
}

function extract(path: string, name: string): Buffer {
  return execFileSync('tar', ['-xOf', path, name], { maxBuffer: 1 << 28 });
}

async function twoImagesSharingALayer(): Promise<{ a: BuiltImage; b: BuiltImage }> {
  const base = await makeLayer({ 'etc/base': 'base layer '.repeat(1000) });
  const a = makeImage([base, await makeLayer({ 'app/a': 'a' })], { label: 'a' });
  const b = makeImage([base, await makeLayer({ 'app/b': 'b' }, 'none')], { label: 'b', format: 'docker' });
  return { a, b };
}

describe('ArchiveTarget', () => {
  it('writes one tar that skopeo reads as docker-archive and as oci-archive, each blob once', async () => {
    const dir = newDir();
    const out = join(dir, 'images.tar');
    const { a, b } = await twoImagesSharingALayer();
    const target = new ArchiveTarget(out);
    await Promise.all([pushImage(target, a, 'registry.example:5000/team/app:v1'), pushImage(target, b, 'registry.example:5000/team/app:v2')]);
    assert.equal(await target.exists(a.manifest.desc), true);
    await target.commit();

    const names = listTar(out);
    assert.equal(names[0], 'oci-layout');
    const blobNames = names.filter((n) => n.startsWith('blobs/sha256/') && n.length > 'blobs/sha256/'.length);
    assert.equal(new Set(blobNames).size, blobNames.length, 'a blob was written twice');
    const all = new Map([...a.blobs, ...b.blobs]);
    assert.deepEqual(new Set(blobNames), new Set([...all.keys()].map((d) => `blobs/sha256/${d.slice(7)}`)));
    for (const [digest, bytes] of all) assert.deepEqual(extract(out, `blobs/sha256/${digest.slice(7)}`), bytes);
    for (const n of ['index.json', 'manifest.json', 'repositories']) assert.ok(names.includes(n), n);

    const manifestJson = JSON.parse(extract(out, 'manifest.json').toString());
    assert.deepEqual(manifestJson, [
      {
        Config: `blobs/sha256/${a.config.desc.digest.slice(7)}`,
        RepoTags: ['registry.example:5000/team/app:v1'],
        Layers: a.layers.map((l) => `blobs/sha256/${l.desc.digest.slice(7)}`),
      },
      {
        Config: `blobs/sha256/${b.config.desc.digest.slice(7)}`,
        RepoTags: ['registry.example:5000/team/app:v2'],
        Layers: b.layers.map((l) => `blobs/sha256/${l.desc.digest.slice(7)}`),
      },
    ]);
    assert.deepEqual(JSON.parse(extract(out, 'repositories').toString()), {
      'registry.example:5000/team/app': { v1: a.layers[1]!.desc.digest.slice(7), v2: b.layers[1]!.desc.digest.slice(7) },
    });
    const index = JSON.parse(extract(out, 'index.json').toString());
    assert.deepEqual(
      index.manifests.map((m: any) => [m.digest, m.annotations[Annotation.refName], m.annotations[Annotation.containerdName]]),
      [
        [a.manifest.desc.digest, 'v1', 'registry.example:5000/team/app:v1'],
        [b.manifest.desc.digest, 'v2', 'registry.example:5000/team/app:v2'],
      ],
    );

    // docker-archive: skopeo reports the layers by diff_id (it decompresses them itself).
    const viaDocker = JSON.parse(skopeo('inspect', `docker-archive:${out}:registry.example:5000/team/app:v2`));
    assert.deepEqual(viaDocker.Layers, b.layers.map((l) => l.diffId));
    const viaDockerA = JSON.parse(skopeo('inspect', '--config', `docker-archive:${out}:registry.example:5000/team/app:v1`));
    assert.deepEqual(viaDockerA.rootfs.diff_ids, a.layers.map((l) => l.diffId));
    // oci-archive: exactly the manifests we stored.
    assert.equal(sha256(Buffer.from(skopeo('inspect', '--raw', `oci-archive:${out}:v1`))), a.manifest.desc.digest);
    // (skopeo 1.9 skips index.json entries with Docker media types, so only the OCI image here.)
    const viaOci = JSON.parse(skopeo('inspect', `oci-archive:${out}:v1`));
    assert.equal(viaOci.Digest, a.manifest.desc.digest);
    assert.deepEqual(viaOci.Layers, a.layers.map((l) => l.desc.digest));
    // And a full copy out of the docker view works (reads every layer).
    const copied = join(dir, 'copied');
    skopeo('copy', '-q', `docker-archive:${out}:registry.example:5000/team/app:v1`, `oci:${copied}:x`);
    const copiedConfig = JSON.parse(skopeo('inspect', '--config', `oci:${copied}:x`));
    assert.deepEqual(copiedConfig.rootfs.diff_ids, a.layers.map((l) => l.diffId));
    assert.deepEqual(readdirSync(dir).sort(), ['copied', 'images.tar']);
  });

  it('stores a multi-platform index in the OCI view only, and honours imageName', async () => {
    const dir = newDir();
    const out = join(dir, 'multi.tar');
    const amd = makeImage([await makeLayer({ f: 'amd' })]);
    const arm = makeImage([await makeLayer({ f: 'arm' })], { platform: { os: 'linux', architecture: 'arm64' } });
    const idx = makeIndex([amd, arm]);
    const single = makeImage([await makeLayer({ f: 'single' })], { label: 'single' });
    const target = new ArchiveTarget(out, { imageName: 'registry.example/app' });
    await pushIndex(target, idx, 'multi');
    await pushImage(target, single, 'one');
    await target.commit();
    const index = JSON.parse(extract(out, 'index.json').toString());
    assert.deepEqual(
      index.manifests.map((m: any) => [m.digest, m.annotations[Annotation.refName], m.annotations[Annotation.containerdName]]),
      [
        [idx.index.desc.digest, 'multi', 'registry.example/app:multi'],
        [single.manifest.desc.digest, 'one', 'registry.example/app:one'],
      ],
    );
    const manifestJson = JSON.parse(extract(out, 'manifest.json').toString());
    assert.deepEqual(manifestJson.map((m: any) => m.RepoTags), [['registry.example/app:one']]);
    assert.equal(sha256(Buffer.from(skopeo('inspect', '--raw', `oci-archive:${out}:multi`))), idx.index.desc.digest);
    const armInspect = JSON.parse(skopeo('--override-arch', 'arm64', 'inspect', `oci-archive:${out}:multi`));
    assert.equal(armInspect.Architecture, 'arm64');
    assert.deepEqual(armInspect.Layers, arm.layers.map((l) => l.desc.digest));
    assert.equal(JSON.parse(skopeo('inspect', `docker-archive:${out}`)).Digest !== undefined, true);
  });

  it('gzips the whole tar when asked, and skopeo still reads it', async () => {
    const dir = newDir();
    const out = join(dir, 'images.tar.gz');
    const { a } = await twoImagesSharingALayer();
    const target = new ArchiveTarget(out, { gzip: true });
    await pushImage(target, a, 'example.com/a:1');
    await target.commit();
    const raw = readFileSync(out);
    assert.deepEqual([raw[0], raw[1]], [0x1f, 0x8b]);
    const tarBytes = gunzipSync(raw);
    assert.equal(tarBytes.length % 512, 0);
    // skopeo 1.9 cannot read a compressed docker-archive itself; docker load and tarpush can.
    const plain = join(dir, 'plain.tar');
    writeFileSync(plain, tarBytes);
    const viaDocker = JSON.parse(skopeo('inspect', `docker-archive:${plain}`));
    assert.deepEqual(viaDocker.Layers, a.layers.map((l) => l.diffId));
    assert.equal(sha256(Buffer.from(skopeo('inspect', '--raw', `oci-archive:${plain}:1`))), a.manifest.desc.digest);
  });

  it('accepts docker images at commit time', async () => {
    const dir = newDir();
    const out = join(dir, 'late.tar');
    const { a } = await twoImagesSharingALayer();
    const target = new ArchiveTarget(out);
    await pushImage(target, a);
    target.addRoot(a.manifest.desc, { [Annotation.refName]: 'late' });
    await target.commit({
      dockerManifests: [{ configDigest: a.config.desc.digest, layerDigests: a.layers.map((l) => l.desc.digest), repoTags: ['x.io/late:1'] }],
    });
    assert.deepEqual(JSON.parse(skopeo('inspect', `docker-archive:${out}:x.io/late:1`)).Layers, a.layers.map((l) => l.diffId));
    assert.equal(JSON.parse(skopeo('inspect', `oci-archive:${out}:late`)).Digest, a.manifest.desc.digest);
  });

  it('leaves images with foreign layers out of manifest.json', async () => {
    const dir = newDir();
    const { a } = await twoImagesSharingALayer();
    const target = new ArchiveTarget(join(dir, 'win.tar'));
    const foreign = { ...a.layers[0]!.desc, mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', urls: ['https://mcr.example/x'] };
    assert.equal(target.addDockerImage(a.manifest.desc, a.config.desc, [foreign, a.layers[1]!.desc], ['x/win:1']), false);
    assert.equal(target.addDockerImage(a.manifest.desc, a.config.desc, a.layers.map((l) => l.desc), ['x/a:1']), true);
    await target.abort();
  });

  it('refuses to commit a manifest.json that points at blobs never written', async () => {
    const dir = newDir();
    const { a } = await twoImagesSharingALayer();
    const target = new ArchiveTarget(join(dir, 'x.tar'));
    await target.putBlob(a.config.desc, () => memoryContent(a.config.desc, a.blobs).open());
    await assert.rejects(
      target.commit({ dockerManifests: [{ configDigest: a.config.desc.digest, layerDigests: [a.layers[0]!.desc.digest], repoTags: ['x:1'] }] }),
      /never written/,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  it('aborts the whole archive when a blob stream fails mid-entry, leaving nothing behind', async () => {
    const dir = newDir();
    const out = join(dir, 'broken.tar');
    const { a } = await twoImagesSharingALayer();
    const big = await makeLayer({ big: Buffer.alloc(3_000_000, 1) }, 'none');
    const target = new ArchiveTarget(out);
    await target.putBlob(a.config.desc, () => memoryContent(a.config.desc, a.blobs).open());
    const corrupt = Buffer.from(big.bytes);
    corrupt[2_000_000] ^= 0xff;
    const failing = target.putBlob(big.desc, () => memoryContent(big.desc, new Map([[big.desc.digest, corrupt]])).open());
    // Queued behind the failing one: it must fail too, not be written into a broken tar.
    const queued = target.putBlob(a.layers[0]!.desc, () => memoryContent(a.layers[0]!.desc, a.blobs).open());
    await assert.rejects(failing, /does not match its descriptor/);
    await assert.rejects(queued);
    await assert.rejects(target.putManifest(a.manifest.desc, a.manifest.bytes, 'v1'), /aborted/);
    await assert.rejects(target.commit(), /aborted/);
    await target.abort();
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('abort() removes the partial archive; a failure to open a source leaves the archive usable', async () => {
    const dir = newDir();
    const out = join(dir, 'aborted.tar');
    const { a } = await twoImagesSharingALayer();
    const target = new ArchiveTarget(out);
    await assert.rejects(
      target.putBlob(a.layers[0]!.desc, async () => {
        throw new Error('registry said 503');
      }),
      /503/,
    );
    await target.putBlob(a.layers[0]!.desc, () => memoryContent(a.layers[0]!.desc, a.blobs).open());
    assert.equal(await target.exists(a.layers[0]!.desc), true);
    // The temp file beside the output (its open is asynchronous, so give it a moment on a busy machine).
    for (let i = 0; i < 100 && readdirSync(dir).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(readdirSync(dir).length, 1);
    assert.ok(readdirSync(dir)[0]!.startsWith('.aborted.tar.tmp-'));
    await target.abort();
    await target.abort();
    assert.deepEqual(readdirSync(dir), []);
  });

  it('removes the partial archive when the process gets Ctrl-C mid-write', async () => {
    const dir = newDir();
    const out = join(dir, 'interrupted.tar');
    const script = `
      import { Readable } from 'node:stream';
      import { ArchiveTarget } from ${JSON.stringify(new URL('../../src/formats/archive-writer.js', import.meta.url).href)};
      const target = new ArchiveTarget(${JSON.stringify(out)});
      const desc = { mediaType: 'application/octet-stream', size: 1 << 30, digest: 'sha256:' + '0'.repeat(64) };
      target.putBlob(desc, async () => Readable.from((async function* () {
        for (;;) { yield Buffer.alloc(65536); await new Promise((r) => setTimeout(r, 5)); }
      })()));
      setInterval(() => {}, 1000);
    `;
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 10_000;
    while (!readdirSync(dir).some((n) => n.startsWith('.interrupted.tar.tmp-')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(readdirSync(dir).length, 1, 'the child never started writing');
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('streams large blobs without buffering them', async () => {
    const dir = newDir();
    const out = join(dir, 'big.tar');
    const size = 256 * 1024 * 1024;
    const chunk = Buffer.alloc(1 << 20, 0x5a);
    const { createHash } = await import('node:crypto');
    const h = createHash('sha256');
    for (let i = 0; i < size / chunk.length; i++) h.update(chunk);
    const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar', size, digest: `sha256:${h.digest('hex')}` };
    const target = new ArchiveTarget(out);
    const before = process.memoryUsage().rss;
    let peak = before;
    await target.putBlob(desc, async () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < size / chunk.length; i++) {
            peak = Math.max(peak, process.memoryUsage().rss);
            yield chunk;
          }
        })(),
      ),
    );
    await target.commit();
    assert.ok(peak - before < 64 * 1024 * 1024, `rss grew by ${((peak - before) / 1048576).toFixed(0)} MiB`);
    assert.ok(readFileSync(out).length > size);
  });

  it('splits references into repository and tag', () => {
    assert.deepEqual(splitReference('registry:5000/team/app:v1'), { repository: 'registry:5000/team/app', tag: 'v1' });
    assert.equal(splitReference('registry:5000/team/app'), undefined);
    assert.equal(splitReference('app@sha256:abc'), undefined);
  });
});

describe('ArchiveTarget output verified by the verify engine', () => {
  it('is a complete OCI layout: every blob referenced, every file named by its hash', async () => {
    const { verifyImages } = await import('../../src/verify/index.js');
    const { contentFromDescriptor } = await import('../../src/image/content.js');
    const { DirBlobReader, DirTree } = await import('./util.js');
    const dir = newDir();
    const out = join(dir, 'all.tar');
    const { a, b } = await twoImagesSharingALayer();
    const amd = makeImage([await makeLayer({ f: 'amd' }, 'zstd')]);
    const arm = makeImage([await makeLayer({ f: 'arm' })], { platform: { os: 'linux', architecture: 'arm64' } });
    const idx = makeIndex([amd, arm]);
    const target = new ArchiveTarget(out, { imageName: 'example.com/app' });
    await Promise.all([pushImage(target, a, 'a'), pushImage(target, b, 'b'), pushIndex(target, idx, 'multi')]);
    await target.commit();
    const extracted = join(dir, 'x');
    execFileSync('mkdir', [extracted]);
    execFileSync('tar', ['-xf', out, '-C', extracted]);
    const index = JSON.parse(readFileSync(join(extracted, 'index.json'), 'utf8'));
    const reader = new DirBlobReader(extracted);
    const report = await verifyImages(
      index.manifests.map((d: any) => contentFromDescriptor(d, reader)),
      { where: out, tree: new DirTree(extracted) },
    );
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.warnings, []);
    assert.equal(report.checked.manifests, 5);
    assert.equal(report.checked.layers, 5);
  });
});
