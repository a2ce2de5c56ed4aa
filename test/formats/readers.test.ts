import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImageSource } from '../../src/formats/open.js';
import { selectImages, selectOne } from '../../src/formats/select.js';
import { parsePlatform } from '../../src/image/platform.js';
import { TarpushError } from '../../src/errors.js';

/** testdata/ from the compiled test (dist/test/formats → repo root). */
export const testdata = (p: string) => fileURLToPath(new URL(`../../../testdata/${p}`, import.meta.url));

const cacheDir = mkdtempSync(join(tmpdir(), 'tarpush-readers-cache-'));
process.env.TARPUSH_CACHE_DIR = cacheDir;
test.after(() => rmSync(cacheDir, { recursive: true, force: true }));

async function digestOf(path: string, image?: string, platform?: string): Promise<string> {
  const source = await openImageSource(testdata(path));
  try {
    const s = await selectOne(source, { image, platform: platform ? parsePlatform(platform) : undefined });
    return (await s.content.describe()).digest;
  } finally {
    await source.close();
  }
}

async function rejects(path: string, pattern: RegExp, image?: string): Promise<void> {
  await assert.rejects(
    async () => {
      const source = await openImageSource(testdata(path));
      try {
        for (const s of await selectImages(source, { image })) await s.content.describe();
      } finally {
        await source.close();
      }
    },
    (e: unknown) => {
      assert.ok(e instanceof TarpushError, `expected a TarpushError, got ${String(e)}`);
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes('\n'), 'error is one line');
      return true;
    },
  );
}

test('crane tarball digests match crane exactly (digest contract)', async () => {
  assert.equal(
    await digestOf('go-containerregistry/pkg/v1/mutate/testdata/whiteout_dir.tar'),
    'sha256:a7f58db5cbfcc6af2297bde4c32166a2010fb0ef3dde5da3611aca0999759cff',
  );
  assert.equal(await digestOf('dive/.data/test-kaniko-image.tar'), 'sha256:e33344aac8b07acf249bd9769a94af69966d99771b1d1e455571fcbbc15d6cec');
});

test('OCI archives without manifest.json keep their manifest digest (gzip, zstd, uncompressed, estargz layers)', async () => {
  assert.equal(await digestOf('dive/.data/test-oci-gzip-image.tar'), 'sha256:7d255e9e3d216a9a92a5c1ce0563a5ddd92f28a34a9df025d3cf8dfa5ea08366');
  assert.equal(await digestOf('dive/.data/test-oci-zstd-image.tar'), 'sha256:f5e3515f39a16543547c03d03ec34faf9276742e6ce7c7dd6e467a14e90b29fc');
  assert.equal(await digestOf('dive/.data/test-oci-uncompressed-image.tar'), 'sha256:5cec6b4ce61c35c3a83e09d72d81a335b49fdcef727beee160d12eeaf066f11b');
  assert.equal(await digestOf('dive/.data/test-oci-estargz-image.tar'), 'sha256:2e75eb783d1a845ce3846d1a7da4453f825886aab5b3ad03afcec7730a208c4d');
  assert.equal(await digestOf('stereoscope/pkg/image/oci/testdata/valid-oci.tar'), 'sha256:c1ed04a3da941a5dd09b58b16c37f065557863d382ef97995ddac885a8452ebb');
});

test('OCI layout directories: ref names, nested indexes, Docker media types inside a layout', async () => {
  const dir = 'go-containerregistry/pkg/v1/layout/testdata/test_index';
  assert.equal(await digestOf(dir, '1'), 'sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650');
  assert.equal(await digestOf(dir, '3'), 'sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5');
  assert.equal(await digestOf(dir, '4'), 'sha256:2b29a2b8dea3af91ea7d0154be1da0c92d55ddd098540930fc8d3db7de377fdb');
  assert.equal(await digestOf(dir, '@0'), 'sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650');
  assert.equal(await digestOf('regclient/testdata/testrepo', 'v1'), 'sha256:7ceb9b6bcc274697d0c38be6214b50cec79d601bc61708747d3f6cb772f6c6fa');
  assert.equal(
    await digestOf('go-containerregistry/pkg/v1/layout/testdata/test_index_one_image'),
    'sha256:98ceaf93e482fe91b9bfd6bba07137c098e49ee2d55e69f09fb6c951e75e0e46',
  );
});

test('--platform picks a manifest inside an index; no match lists what exists', async () => {
  const dir = 'stereoscope/pkg/image/oci/testdata/multiplatform_oci_dir';
  assert.equal(await digestOf(dir), 'sha256:a1a8d08faa5fe3d2ccc0ba54874e39dede9a17120f883c5cb56f2fd9309067c8');
  assert.equal(await digestOf(dir, undefined, 'linux/amd64'), 'sha256:e7c26a4b4d156fd9947ee82295b7b78acf7aa54b93b8f3e4b9f608179ffb20e8');
  assert.equal(await digestOf(dir, undefined, 'linux/arm64'), 'sha256:5ed07065bcbc6c52e3ad28526557d7b6833613fc79257b1a786de85e37c03b05');
  await assert.rejects(digestOf(dir, undefined, 'linux/ppc64le'), /no image for platform linux\/ppc64le \(available: linux\/amd64, linux\/arm64\)/);
});

test('multi-image archives list every image; --image matches normalised tags; ambiguity lists choices', async () => {
  const source = await openImageSource(testdata('go-containerregistry/pkg/v1/tarball/testdata/test_bundle.tar'));
  try {
    assert.deepEqual(
      source.entries.map((e) => e.tags),
      [['docker.io/library/test_image_2:latest'], ['docker.io/library/test_image_1:latest']],
    );
    for (const sel of ['test_image_1', 'test_image_1:latest', 'index.docker.io/library/test_image_1:latest', '@1']) {
      const [s] = await selectImages(source, { image: sel });
      assert.equal(s!.entry.position, 1, sel);
    }
    await assert.rejects(selectOne(source, {}), /holds 2 images; pick one with --image \(choices: @0 docker.io\/library\/test_image_2:latest; @1/);
    await assert.rejects(selectImages(source, { image: 'nope' }), /no image matches --image nope/);
    await assert.rejects(selectImages(source, { image: '@5' }), /only 2 image\(s\)/);
  } finally {
    await source.close();
  }
});

test('symlinked layers (test_link) and xz-compressed multi-image archives (skopeo) are read', async () => {
  const link = await openImageSource(testdata('go-containerregistry/pkg/v1/tarball/testdata/test_link.tar'));
  try {
    const [s] = await selectImages(link, { image: 'bazel/v1/tarball:test_image_3' });
    const layers = (await s!.content.children()).slice(1);
    assert.equal(layers.length, 2);
    for (const l of layers) assert.ok((await l.describe()).size > 0);
  } finally {
    await link.close();
  }
  const xz = await openImageSource(testdata('skopeo/systemtest/testdata/docker-two-images.tar.xz'));
  try {
    assert.equal(xz.entries.length, 2);
    assert.deepEqual(xz.entries.flatMap((e) => e.tags).sort(), ['example.com/empty/but:different', 'example.com/empty:latest']);
    for (const e of xz.entries) assert.match((await e.root.describe()).digest, /^sha256:[a-f0-9]{64}$/);
  } finally {
    await xz.close();
  }
});

test('Docker 25 archive whose index.json lists no manifests falls back to manifest.json', async () => {
  const source = await openImageSource(testdata('go-containerregistry/pkg/v1/tarball/testdata/hello-world-v25.tar'));
  try {
    assert.equal(source.entries.length, 1);
    assert.equal(source.entries[0]!.synthesised, true);
    const children = await source.entries[0]!.root.children();
    assert.equal((await children[0]!.describe()).digest, 'sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44');
  } finally {
    await source.close();
  }
});

test('inputs that are not images are refused with one clear line', async () => {
  await rejects('go-containerregistry/pkg/v1/tarball/testdata/null_manifest.tar', /manifest\.json: is null/);
  await rejects('go-containerregistry/pkg/v1/tarball/testdata/no_manifest.tar', /no manifest\.json/);
  await rejects('go-containerregistry/pkg/v1/tarball/testdata/content.tar', /not a container image/);
  await rejects('dive/.data/test-uncompressed-image.tar', /not a container image/);
  await rejects('stereoscope/pkg/image/oci/testdata/invalid_file', /index\.json: is empty/);
  await rejects('stereoscope/pkg/image/oci/testdata/no_manifests', /index\.json: is an image manifest, not an OCI image index/);
  await rejects('containers-image/oci/layout/fixtures/name_lookups', /not an image manifest or index \(media type x-completely-unknown\)/, 'invalid-mime');
  await rejects('does/not/exist.tar', /no such file/);
});

test('no temp files are left behind after reading a compressed archive', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tarpush-tmp-'));
  try {
    const source = await openImageSource(testdata('skopeo/systemtest/testdata/docker-two-images.tar.xz'), { tmpdir: dir });
    assert.ok(readdirSync(dir).length > 0, 'the spool lives in --tmpdir');
    await source.close();
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
