import assert from 'node:assert/strict';
import { readFileSync, renameSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { contentFromDescriptor } from '../../src/image/content.js';
import type { Descriptor } from '../../src/image/descriptor.js';
import { sha256 } from '../../src/image/digest.js';
import { serialiseIndex, serialiseManifest } from '../../src/image/manifest.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { verifyImage, verifyImages, type VerifyReport } from '../../src/verify/index.js';
import {
  DirBlobReader,
  DirTree,
  blobPath,
  descOf,
  makeImage,
  makeIndex,
  makeLayer,
  memoryContent,
  removeDir,
  tempDir,
  writeLayoutByHand,
  type BuiltImage,
  type BuiltIndex,
} from '../writers/util.js';

const dirs: string[] = [];
after(() => dirs.forEach(removeDir));

/** A two-platform index sharing a base layer, with gzip, zstd and uncompressed layers. */
async function goodIndex(): Promise<BuiltIndex> {
  const base = await makeLayer({ 'etc/os-release': 'ID=test\n', 'bin/sh': Buffer.alloc(40_000, 3) });
  const amd = makeImage([base, await makeLayer({ 'app/amd': 'amd64 binary' }, 'zstd'), await makeLayer({ 'etc/x': 'plain' }, 'none')]);
  const arm = makeImage([base, await makeLayer({ 'app/arm': 'arm64 binary' }, 'gzip', 'docker')], {
    platform: { os: 'linux', architecture: 'arm64' },
    format: 'docker',
  });
  return makeIndex([amd, arm]);
}

async function layoutOf(roots: Descriptor[], blobs: Map<string, Buffer>): Promise<string> {
  const dir = tempDir('tarpush-verify-');
  dirs.push(dir);
  await writeLayoutByHand(dir, roots, blobs);
  return dir;
}

async function verifyLayout(dir: string, root: Descriptor): Promise<VerifyReport> {
  return verifyImage(contentFromDescriptor(root, new DirBlobReader(dir)), { where: dir, tree: new DirTree(dir) });
}

function problemsMatching(report: VerifyReport, pattern: RegExp): string[] {
  return report.problems.map((p) => p.problem).filter((p) => pattern.test(p));
}

function assertOnlyProblems(report: VerifyReport, patterns: RegExp[]): void {
  assert.equal(report.ok, false);
  for (const p of patterns) assert.ok(problemsMatching(report, p).length > 0, `no problem matching ${p} in ${JSON.stringify(report.problems, null, 1)}`);
  for (const problem of report.problems) {
    assert.ok(patterns.some((p) => p.test(problem.problem)), `unexpected problem: ${problem.problem}`);
  }
}

describe('verifyImage', () => {
  it('passes a good multi-platform layout and reads each blob once', async () => {
    const idx = await goodIndex();
    const dir = await layoutOf([idx.index.desc], idx.blobs);
    const report = await verifyLayout(dir, idx.index.desc);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.warnings, []);
    assert.equal(report.ok, true);
    assert.deepEqual({ ...report.checked, bytes: 0 }, { manifests: 3, configs: 2, layers: 4, bytes: 0 });
    const total = [...idx.blobs.values()].reduce((n, b) => n + b.length, 0);
    assert.equal(report.checked.bytes, total);
  });

  it('passes the same graph held in memory (no tree)', async () => {
    const idx = await goodIndex();
    const report = await verifyImage(memoryContent(idx.index.desc, idx.blobs), { where: 'memory' });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
  });

  it('names a flipped byte in a layer', async () => {
    const idx = await goodIndex();
    const dir = await layoutOf([idx.index.desc], idx.blobs);
    const layer = idx.images[0]!.layers[1]!; // zstd
    const path = blobPath(dir, layer.desc.digest);
    const bytes = readFileSync(path);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    writeFileSync(path, bytes);
    const report = await verifyLayout(dir, idx.index.desc);
    assertOnlyProblems(report, [/does not match its digest/]);
    const p = report.problems.find((x) => /does not match its digest/.test(x.problem))!;
    assert.equal(p.digest, layer.desc.digest);
    assert.match(p.problem, new RegExp(layer.desc.digest));
  });

  it('names a truncated blob', async () => {
    const idx = await goodIndex();
    const dir = await layoutOf([idx.index.desc], idx.blobs);
    const layer = idx.images[1]!.layers[1]!;
    truncateSync(blobPath(dir, layer.desc.digest), layer.desc.size - 10);
    const report = await verifyLayout(dir, idx.index.desc);
    assertOnlyProblems(report, [/truncated: \d+ bytes where \d+ were expected/]);
    assert.equal(report.problems[0]!.digest, layer.desc.digest);
  });

  it('names a missing blob and still checks everything else', async () => {
    const idx = await goodIndex();
    const dir = await layoutOf([idx.index.desc], idx.blobs);
    const missing = idx.images[0]!.layers[2]!;
    unlinkSync(blobPath(dir, missing.desc.digest));
    const flipped = idx.images[1]!.config;
    const cfg = readFileSync(blobPath(dir, flipped.desc.digest));
    cfg[5] ^= 0x20;
    writeFileSync(blobPath(dir, flipped.desc.digest), cfg);
    const report = await verifyLayout(dir, idx.index.desc);
    assertOnlyProblems(report, [/blob is missing/, /does not match its digest/]);
    assert.ok(report.problems.some((p) => p.digest === missing.desc.digest && /missing/.test(p.problem)));
    assert.ok(report.problems.some((p) => p.digest === flipped.desc.digest && /config/.test(p.problem)));
    // The other layers were still read.
    assert.equal(report.checked.layers, 3);
  });

  it('names a config whose diff_ids do not match the layers', async () => {
    const l1 = await makeLayer({ a: '1' });
    const l2 = await makeLayer({ b: '2' });
    const img = makeImage([l1, l2], { diffIds: [l1.diffId, l1.diffId] });
    const dir = await layoutOf([img.manifest.desc], img.blobs);
    const report = await verifyLayout(dir, img.manifest.desc);
    assertOnlyProblems(report, [/layer 1 \(sha256:[0-9a-f]{64}\) uncompressed hashes to sha256:[0-9a-f]{64}, but the config's diff_ids\[1\] is/]);
    assert.equal(report.problems[0]!.digest, l2.desc.digest);
    assert.ok(report.problems[0]!.problem.includes(l2.diffId));
  });

  it('names a wrong diff_id count', async () => {
    const l1 = await makeLayer({ a: '1' });
    const l2 = await makeLayer({ b: '2' });
    const img = makeImage([l1, l2], { diffIds: [l1.diffId] });
    const report = await verifyImage(memoryContent(img.manifest.desc, img.blobs), { where: 'memory' });
    assertOnlyProblems(report, [/lists 1 diff_ids but the manifest has 2 layers/]);
  });

  it('names a renamed layout blob (file name is not its hash)', async () => {
    const idx = await goodIndex();
    const dir = await layoutOf([idx.index.desc], idx.blobs);
    const layer = idx.images[0]!.layers[0]!;
    const wrongName = `sha256:${'ab'.repeat(32)}`;
    renameSync(blobPath(dir, layer.desc.digest), blobPath(dir, wrongName));
    const report = await verifyLayout(dir, idx.index.desc);
    assertOnlyProblems(report, [/blob is missing/, /blobs\/sha256\/(ab)+ does not hold what its name says: its content hashes to sha256:/]);
    const renamed = report.problems.find((p) => p.path === `blobs/sha256/${'ab'.repeat(32)}`)!;
    assert.ok(renamed.problem.includes(layer.desc.digest));
    assert.ok(report.warnings.some((w) => w.digest === wrongName && /unreferenced blob/.test(w.problem)));
  });

  it('warns about unreferenced blobs without failing', async () => {
    const idx = await goodIndex();
    const extra = Buffer.from('left over from a deleted image');
    const blobs = new Map(idx.blobs);
    blobs.set(sha256(extra), extra);
    const dir = await layoutOf([idx.index.desc], blobs);
    writeFileSync(join(dir, 'blobs', 'sha256', 'README'), 'not a blob');
    const report = await verifyLayout(dir, idx.index.desc);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.deepEqual(report.warnings.map((w) => w.problem).sort(), [
      `unexpected file blobs/sha256/README (not blobs/<algorithm>/<hex>)`,
      `unreferenced blob ${sha256(extra)} (not reachable from index.json)`,
    ]);
  });

  it('checks one root of a multi-image layout without calling the others unreferenced', async () => {
    const idx = await goodIndex();
    const other = makeImage([await makeLayer({ other: 'x' })], { label: 'other' });
    const dir = await layoutOf([idx.index.desc, other.manifest.desc], new Map([...idx.blobs, ...other.blobs]));
    const report = await verifyLayout(dir, other.manifest.desc);
    assert.equal(report.ok, true);
    assert.deepEqual(report.warnings, []);
    // Blobs of the other root are still hashed against their names.
    assert.equal(report.checked.bytes, [...idx.blobs.values(), ...other.blobs.values()].reduce((n, b) => n + b.length, 0));
  });

  it('names unknown media types and documents that do not parse', async () => {
    const img = makeImage([await makeLayer({ a: 'a' })]);
    const strange = Buffer.from('{"hello":"world"}');
    const broken = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":');
    const indexBytes = serialiseIndex([
      img.manifest.desc,
      descOf('application/x-unknown-thing', strange),
      descOf(MediaType.ociManifest, broken),
    ]);
    const index = descOf(MediaType.ociIndex, indexBytes);
    const blobs = new Map([...img.blobs, [sha256(strange), strange], [sha256(broken), broken], [index.digest, indexBytes]]);
    const dir = await layoutOf([index], blobs);
    const report = await verifyLayout(dir, index);
    assertOnlyProblems(report, [/unknown media type "application\/x-unknown-thing"/, /manifest sha256:[0-9a-f]+ does not parse: is not valid JSON/]);
    // An unknown root media type, too.
    const rootReport = await verifyImage(memoryContent(descOf('text/plain', strange), new Map([[sha256(strange), strange]])), { where: 'x' });
    assertOnlyProblems(rootReport, [/unknown media type "text\/plain"/]);
  });

  it('names a config that does not parse', async () => {
    const layer = await makeLayer({ a: 'a' });
    const configBytes = Buffer.from('{"rootfs": ');
    const config = descOf(MediaType.ociConfig, configBytes);
    const manifestBytes = serialiseManifest({ mediaType: MediaType.ociManifest, config, layers: [layer.desc] });
    const manifest = descOf(MediaType.ociManifest, manifestBytes);
    const blobs = new Map([
      [manifest.digest, manifestBytes],
      [config.digest, configBytes],
      [layer.desc.digest, layer.bytes],
    ]);
    const report = await verifyImage(memoryContent(manifest, blobs), { where: 'memory' });
    assertOnlyProblems(report, [new RegExp(`config ${config.digest} does not parse: is not valid JSON`)]);
    assert.equal(report.checked.layers, 1);
  });

  it('sniffs layers with unknown media types and checks their diff_ids', async () => {
    const good = await makeLayer({ a: 'sniff me' }, 'gzip');
    const custom = { ...good, desc: { ...good.desc, mediaType: 'application/vnd.example.layer.v1+custom' } };
    const img = makeImage([custom]);
    const report = await verifyImage(memoryContent(img.manifest.desc, img.blobs), { where: 'memory' });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    const lying = makeImage([custom], { diffIds: [good.desc.digest] });
    const bad = await verifyImage(memoryContent(lying.manifest.desc, lying.blobs), { where: 'memory' });
    assertOnlyProblems(bad, [/diff_ids\[0\]/]);
  });

  it('names a gzip layer whose content is not gzip, and an artifact is checked by digest only', async () => {
    const plain = await makeLayer({ a: 'not compressed' }, 'none');
    const mislabelled = { ...plain, desc: { ...plain.desc, mediaType: MediaType.ociLayerGzip } };
    const img = makeImage([mislabelled]);
    const report = await verifyImage(memoryContent(img.manifest.desc, img.blobs), { where: 'memory' });
    assertOnlyProblems(report, [/gzip/]);

    const payload = Buffer.from('{"predicateType":"x"}');
    const emptyConfig = Buffer.from('{}');
    const manifestBytes = serialiseManifest({
      mediaType: MediaType.ociManifest,
      config: descOf(MediaType.ociEmpty, emptyConfig),
      layers: [descOf('application/vnd.in-toto+json', payload)],
    });
    const artifact = descOf(MediaType.ociManifest, manifestBytes);
    const blobs = new Map([
      [artifact.digest, manifestBytes],
      [sha256(emptyConfig), emptyConfig],
      [sha256(payload), payload],
    ]);
    const ok = await verifyImage(memoryContent(artifact, blobs), { where: 'memory' });
    assert.equal(ok.ok, true, JSON.stringify(ok.problems));
  });

  it('warns (does not fail) about a foreign layer that is not included', async () => {
    const local = await makeLayer({ a: 'a' });
    const foreign = await makeLayer({ windows: 'base' });
    const foreignDesc = { ...foreign.desc, mediaType: MediaType.dockerForeignLayer, urls: ['https://mcr.example/base'] };
    const img = makeImage([{ ...foreign, desc: foreignDesc }, local], { format: 'docker' });
    img.blobs.delete(foreign.desc.digest);
    const report = await verifyImage(memoryContent(img.manifest.desc, img.blobs), { where: 'memory' });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.match(report.warnings[0]!.problem, /foreign layer, fetched from https:\/\/mcr.example\/base/);
  });

  it('verifies every root of a real layout in one report (regclient testrepo)', async () => {
    const dir = fileURLToPath(new URL('../../../testdata/regclient/testdata/testrepo', import.meta.url));
    const tree = new DirTree(dir);
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    const reader = new DirBlobReader(dir);
    const report = await verifyImages(
      index.manifests.map((d) => contentFromDescriptor(d, reader)),
      { where: dir, tree },
    );
    assert.deepEqual(report.problems, []);
    assert.ok(report.checked.manifests > 10);
    // Two pre-OCI-1.1 artifacts (`{}` config of the image config type) are reported as such.
    assert.deepEqual(new Set(report.warnings.map((w) => w.problem.replace(/sha256:\w+/g, 'D'))), new Set(['root manifest D: looks like an artifact (image config type without rootfs, no layer blobs)']));
  });
});

export type { BuiltImage };
