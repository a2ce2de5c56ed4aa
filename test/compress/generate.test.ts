import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import tar from 'tar-stream';
import { writeDockerArchive, writeOciLayout } from '../../bench/lib/generate.js';

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'tarpush-generate-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Every member of a tar, read whole (the archives here are small). */
async function members(path: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  createReadStream(path).pipe(extract as unknown as NodeJS.WritableStream);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const c of entry as AsyncIterable<Buffer>) chunks.push(c);
    out.set(entry.header.name, Buffer.concat(chunks));
  }
  return out;
}

describe('bench image generators', () => {
  test('docker-save archive: manifest, config diff_ids and layers agree, and it is deterministic', async () => {
    const a = join(dir, 'a.tar');
    const image = await writeDockerArchive(a, { totalSize: 3 * MiB, layers: 3, seed: 3 });
    const files = await members(a);
    const manifest = JSON.parse(files.get('manifest.json')!.toString()) as Array<{ Config: string; RepoTags: string[]; Layers: string[] }>;
    assert.equal(manifest.length, 1);
    assert.deepEqual(manifest[0]!.RepoTags, ['bench/app:latest']);
    const config = files.get(manifest[0]!.Config)!;
    assert.equal(sha(config), image.configDigest);
    const diffIds = (JSON.parse(config.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
    assert.deepEqual(
      manifest[0]!.Layers.map((l) => sha(files.get(l)!)),
      diffIds,
    );
    assert.ok(files.has('repositories'));
    const total = image.layers.reduce((s, l) => s + l.size, 0);
    assert.ok(total > 3 * MiB && total < 3.5 * MiB, `layers total ${total}`);
    // Each layer is itself a valid tar with files in it.
    const layerFile = join(dir, 'layer0.tar');
    writeFileSync(layerFile, files.get(manifest[0]!.Layers[0]!)!);
    const inner = await members(layerFile);
    assert.ok([...inner.keys()].some((n) => n.endsWith('.txt')) && [...inner.keys()].some((n) => n.endsWith('.bin')));
    const again = join(dir, 'b.tar');
    await writeDockerArchive(again, { totalSize: 3 * MiB, layers: 3, seed: 3 });
    assert.equal(sha(readFileSync(again)), sha(readFileSync(a)));
  });

  test('docker-save archive with gzipped layers keeps the uncompressed diff_ids', async () => {
    const plain = await writeDockerArchive(join(dir, 'p.tar'), { totalSize: 2 * MiB, layers: 2, seed: 4 });
    const gz = await writeDockerArchive(join(dir, 'g.tar'), { totalSize: 2 * MiB, layers: 2, seed: 4, gzipLayers: true });
    assert.equal(gz.configDigest, plain.configDigest);
    const files = await members(join(dir, 'g.tar'));
    for (const l of gz.layers) {
      const member = [...files.values()].find((b) => sha(b) === l.digest);
      assert.ok(member, `no member with digest ${l.digest}`);
      assert.equal(member[0], 0x1f);
    }
  });

  test('OCI layout: blobs are named by their digests', async () => {
    const layout = join(dir, 'oci');
    const image = await writeOciLayout(layout, { totalSize: 2 * MiB, layers: 2, seed: 5 });
    const blobs = join(layout, 'blobs', 'sha256');
    for (const name of readdirSync(blobs)) assert.equal(sha(readFileSync(join(blobs, name))), `sha256:${name}`);
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const manifest = JSON.parse(readFileSync(join(blobs, index.manifests[0]!.digest.slice(7)), 'utf8')) as {
      config: { digest: string };
      layers: Array<{ digest: string; size: number }>;
    };
    assert.equal(manifest.config.digest, image.configDigest);
    assert.deepEqual(
      manifest.layers.map((l) => l.digest),
      image.layers.map((l) => l.digest),
    );
  });
});
