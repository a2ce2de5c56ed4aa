import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { sha256 } from '../../src/image/digest.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { compareImages } from '../../src/verify/index.js';
import { descOf, makeImage, makeIndex, makeLayer, memoryContent, tarOf, type BuiltImage, type BuiltIndex } from '../writers/util.js';

const node = (x: BuiltImage | BuiltIndex) =>
  'index' in x ? memoryContent(x.index.desc, x.blobs) : memoryContent(x.manifest.desc, x.blobs);

describe('compareImages', () => {
  it('says nothing about equal images', async () => {
    const img = makeImage([await makeLayer({ a: 'a' })]);
    assert.deepEqual(await compareImages(node(img), node(img)), { same: true, differences: [] });
  });

  it('names the layers that differ, by position, digest and size', async () => {
    const base = await makeLayer({ base: 'b' });
    const top1 = await makeLayer({ app: 'v1' });
    const top2 = await makeLayer({ app: 'v2 longer' });
    const local = makeImage([base, top1]);
    const remote = makeImage([base, top2]);
    const { same, differences } = await compareImages(node(local), node(remote));
    assert.equal(same, false);
    assert.match(differences[0]!, /^digest: local sha256:\w+ \(\d+ bytes\), remote sha256:\w+ \(\d+ bytes\)$/);
    assert.ok(differences.some((d) => d.startsWith('config: local')));
    const layerLines = differences.filter((d) => d.startsWith('layer '));
    assert.deepEqual(layerLines, [
      `layer 1: local ${top1.desc.digest} (${top1.desc.size} bytes, ${top1.desc.mediaType}), remote ${top2.desc.digest} (${top2.desc.size} bytes, ${top2.desc.mediaType})`,
    ]);
    assert.ok(differences.includes('config fields that differ: rootfs'));
  });

  it('recognises layers that differ only in compression, and extra layers', async () => {
    const raw = await tarOf({ f: 'same content' });
    const a = { desc: descOf(MediaType.ociLayerGzip, gzipSync(raw, { level: 1 })), bytes: gzipSync(raw, { level: 1 }), diffId: sha256(raw) };
    const b = { desc: descOf(MediaType.ociLayerGzip, gzipSync(raw, { level: 9, memLevel: 9 })), bytes: gzipSync(raw, { level: 9, memLevel: 9 }), diffId: sha256(raw) };
    b.bytes = Buffer.concat([b.bytes, gzipSync(Buffer.alloc(0))]); // force a different blob
    b.desc = descOf(MediaType.ociLayerGzip, b.bytes);
    const { differences } = await compareImages(node(makeImage([a])), node(makeImage([b])));
    assert.ok(differences.includes('the layers have the same uncompressed content (diff_ids) and differ only in their compression'), differences.join('\n'));
    assert.ok(!differences.some((d) => d.startsWith('config:')));

    const extra = await makeLayer({ g: 'extra' });
    const more = await compareImages(node(makeImage([a])), node(makeImage([a, extra])));
    assert.ok(more.differences.includes('layer count: local 1, remote 2'));
    assert.ok(more.differences.includes(`layer 1: only in remote (${extra.desc.digest}, ${extra.desc.size} bytes)`));
  });

  it('compares indexes per platform: missing, extra and different', async () => {
    const amd1 = makeImage([await makeLayer({ f: 'amd v1' })]);
    const amd2 = makeImage([await makeLayer({ f: 'amd v2' })]);
    const arm = makeImage([await makeLayer({ f: 'arm' })], { platform: { os: 'linux', architecture: 'arm64' } });
    const s390 = makeImage([await makeLayer({ f: 's390x' })], { platform: { os: 'linux', architecture: 's390x' } });
    const local = makeIndex([amd1, arm]);
    const remote = makeIndex([amd2, s390]);
    const { differences } = await compareImages(node(local), node(remote));
    assert.ok(differences.includes(`linux/arm64: only in local (${arm.manifest.desc.digest})`), differences.join('\n'));
    assert.ok(differences.includes(`linux/s390x: only in remote (${s390.manifest.desc.digest})`));
    assert.ok(differences.some((d) => d.startsWith('linux/amd64: layer 0: local')));
    assert.ok(!differences.some((d) => d.startsWith('linux/arm64: layer')));
  });

  it('explains an index compared with one of its manifests, and media type changes', async () => {
    const amd = makeImage([await makeLayer({ f: 'amd' })]);
    const arm = makeImage([await makeLayer({ f: 'arm' })], { platform: { os: 'linux', architecture: 'arm64' } });
    const idx = makeIndex([amd, arm]);
    const { differences } = await compareImages(node(idx), node(arm));
    assert.ok(differences.includes('media type: local application/vnd.oci.image.index.v1+json, remote application/vnd.oci.image.manifest.v1+json'));
    assert.ok(differences.includes('local is an index, remote is a single image manifest (the remote manifest is the index\'s linux/arm64 manifest)'));
  });

  it('notices manifests that differ only as documents', async () => {
    const img = makeImage([await makeLayer({ f: 'x' })]);
    const pretty = Buffer.from(JSON.stringify(JSON.parse(img.manifest.bytes.toString()), null, 2));
    const desc = descOf(MediaType.ociManifest, pretty);
    const other = memoryContent(desc, new Map([...img.blobs, [desc.digest, pretty]]));
    const { differences } = await compareImages(node(img), other);
    assert.deepEqual(differences.slice(1), ['the manifests list the same config and layers but differ as documents (annotations, fields or formatting)']);
  });
});
