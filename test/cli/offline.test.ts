import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { runCli, REPO_ROOT } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { dockerSave, layerTar, craneTarball } from '../fixtures/images.js';

const testdata = (p: string) => join(REPO_ROOT, 'testdata', p);
const dir = tempDir(undefined, 'tarpush-offline-');
const env = { TARPUSH_CACHE_DIR: join(dir, 'cache') };
const tarpush = (args: string[], input?: Buffer) => runCli(args, { env, ...(input ? { input } : {}) });

/**
 * The digest contract for inputs without a manifest: tarpush gzips uncompressed layers itself,
 * deterministically. These digests are a promise to users — they must never change (a change of
 * pako, level or block size is a breaking change that needs a new settings key and a release note).
 */
const GOLDEN: Array<[string, string, string]> = [
  ['go-containerregistry/pkg/v1/tarball/testdata/test_image_1.tar', 'sha256:61570336d5cf5a09ec6869d5efb7acf001a10f256589e8dffc86250a5f373699', 'sha256:21052aca4701a8791256a1f593267acaa4a192e3f0b917903c5df3ceeda0feb4'],
  ['dive/.data/test-docker-image.tar', 'sha256:95f0aeabc3364e2274e435a0c464270ff5f5bad6286642cf42ceb9ade76eb7fd', 'sha256:2bca62d108f759f38e9debe5eb2abed8533e7e2afa7784358b1ef001b6c068a3'],
  ['go-containerregistry/pkg/v1/tarball/testdata/hello-world-v25.tar', 'sha256:c49d8155ff169875bef1e6ad8a0e13ac3ebc5ba523d706ba0d29906b5b3b9087', 'sha256:9fa84c338497aff695b6a9fabba888f12838a34f0b51ecdd80cad97fc47d327a'],
  ['containers-image/docker/archive/fixtures/almostempty.tar', 'sha256:66075fcd8742d0f41dc85d9475784d06e43bf1fe4c20626d0f6e5ea2a5470d05', 'sha256:eec671c0a402f54801ae52a61ae43c99606b875e2c74b72b9c92f5e228078a98'],
];

test('golden digests of shipped legacy archives (docker and --format oci), with any worker count, cold and warm cache', async () => {
  for (const [file, docker, oci] of GOLDEN) {
    for (const workers of ['1', '3']) {
      const cold = await runCli(['digest', testdata(file), '--no-cache'], { env: { TARPUSH_WORKERS: workers } });
      assert.equal(cold.stdout.trim(), docker, `${file} with ${workers} worker(s): ${cold.stderr}`);
    }
    const warm1 = await tarpush(['digest', testdata(file)]);
    const warm2 = await tarpush(['digest', testdata(file)]);
    assert.equal(warm1.stdout.trim(), docker);
    assert.equal(warm2.stdout.trim(), docker, 'from the cache');
    const o = await tarpush(['digest', testdata(file), '--format', 'oci']);
    assert.equal(o.stdout.trim(), oci, `${file} --format oci`);
  }
});

test('a multi-image archive without --image prints DIGEST<TAB>REF per image', async () => {
  const r = await tarpush(['digest', testdata('skopeo/systemtest/testdata/docker-two-images.tar.xz')]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    'sha256:c3ea69a11a9f279cd5203fe274b6d362f25c6379aaf0bdfe4df47b08e318aa73\texample.com/empty:latest\n' +
      'sha256:ff921f3fd943b0fafdeca9137ba3cee7d6df80d1365c0302fdfbebf1bfbc0bb1\texample.com/empty/but:different\n',
  );
  const one = await tarpush(['digest', testdata('skopeo/systemtest/testdata/docker-two-images.tar.xz'), '--image', 'example.com/empty/but:different']);
  assert.equal(one.stdout, 'sha256:ff921f3fd943b0fafdeca9137ba3cee7d6df80d1365c0302fdfbebf1bfbc0bb1\n');
  const json = JSON.parse((await tarpush(['digest', testdata('skopeo/systemtest/testdata/docker-two-images.tar.xz'), '--json'])).stdout);
  assert.deepEqual(json.map((j: { ref: string }) => j.ref), ['example.com/empty:latest', 'example.com/empty/but:different']);
});

test('the same archive gives the same digest plain, gzipped (multi-member), zstd- and xz-compressed, and on stdin', async () => {
  const image = await dockerSave([{ tags: ['example.com/same:1'], layers: [await layerTar({ 'a/b': 'c'.repeat(5000) }), await layerTar({ 'd/e': 'f\n' })] }]);
  const plain = join(dir, 'same.tar');
  writeFileSync(plain, image);
  const expected = (await tarpush(['digest', plain])).stdout;
  assert.match(expected, /^sha256:[a-f0-9]{64}\n$/);
  const half = Math.floor(image.length / 2);
  writeFileSync(join(dir, 'same.tar.gz'), Buffer.concat([gzipSync(image.subarray(0, half)), gzipSync(image.subarray(half))]));
  for (const [tool, ext] of [['zstd', 'zst'], ['xz', 'xz']] as const) {
    const r = spawnSync(tool, ['-q', '-k', '-f', plain]);
    assert.equal(r.status, 0, `${tool}: ${r.stderr}`);
    assert.equal((await tarpush(['digest', `${plain}.${ext}`])).stdout, expected, ext);
  }
  assert.equal((await tarpush(['digest', join(dir, 'same.tar.gz')])).stdout, expected, 'multi-member gzip');
  assert.equal((await tarpush(['digest', '-'], gzipSync(image))).stdout, expected, 'stdin');
});

test('crane tarballs keep their gzip layers; --compression none keeps legacy layers as they are', async () => {
  const layer = await layerTar({ 'x/y': 'z'.repeat(100) });
  const crane = join(dir, 'crane.tar');
  writeFileSync(crane, await craneTarball({ tags: ['example.com/crane:1'], layers: [layer] }));
  const load = JSON.parse((await tarpush(['load', crane, '--json'])).stdout);
  assert.equal(load.images[0].format, 'crane-tarball');
  const legacy = join(dir, 'legacy-none.tar');
  writeFileSync(legacy, await dockerSave([{ tags: ['example.com/none:1'], layers: [layer] }]));
  const none = JSON.parse((await tarpush(['load', legacy, '--json', '--compression', 'none'])).stdout);
  assert.deepEqual(none.images[0].manifests[0].layerSizes, [layer.length], 'the layer is pushed uncompressed');
  const gz = JSON.parse((await tarpush(['load', legacy, '--json'])).stdout);
  assert.ok(gz.images[0].manifests[0].layerSizes[0] < layer.length, 'gzip is smaller');
  assert.notEqual(none.images[0].digest, gz.images[0].digest);
});

test('load --layout imports exactly what a push would send; the layout verifies and gives the same digests', async () => {
  const layout = join(dir, 'imported');
  const src = testdata('skopeo/systemtest/testdata/docker-two-images.tar.xz');
  const r = await tarpush(['load', src, '--layout', layout, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const listed = JSON.parse(r.stdout).images as Array<{ tags: string[]; digest: string }>;
  for (const image of listed) {
    const again = await tarpush(['digest', layout, '--image', image.tags[0]!]);
    assert.equal(again.stdout.trim(), image.digest, image.tags[0]);
  }
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  assert.deepEqual(
    index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations['io.containerd.image.name']).sort(),
    ['example.com/empty/but:different', 'example.com/empty:latest'],
  );
  const verify = await tarpush(['verify', layout]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.doesNotMatch(verify.stdout, /warning/, 'no unreferenced blobs: shared blobs are stored once');
  // Adding the same archive again changes nothing.
  await tarpush(['load', src, '--layout', layout]);
  assert.deepEqual(JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')), index);
});

test('load shows images, platforms and sizes as a table on stdout and nothing else', async () => {
  const r = await tarpush(['load', testdata('stereoscope/pkg/image/oci/testdata/multiplatform_oci_dir'), '-q']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /multiplatform_oci_dir: oci-layout, 1 image\(s\)/);
  assert.match(r.stdout, /index \(2\)\s+sha256:a1a8d08faa5fe3d2/);
  assert.match(r.stdout, /linux\/amd64\s+sha256:e7c26a4b4d156fd9/);
  assert.match(r.stdout, /linux\/arm64\s+sha256:5ed07065bcbc6c52/);
});

test('a reader that stops early (| head) ends tarpush quietly', async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'tarpush'), 'load', testdata('regclient/testdata/testrepo')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout.destroy(); // the reader is gone before tarpush writes its first line
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(stderr, '', 'no EPIPE stack');
  assert.equal(code, 0);
});
