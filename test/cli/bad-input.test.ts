import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { runCli, type CliResult } from '../helpers/cli.js';
import { packTar } from '../archive/fixtures.js';
import { dockerSave, layerTar, ociLayout, sha } from '../fixtures/images.js';

const work = mkdtempSync(join(tmpdir(), 'tarpush-badinput-'));
test.after(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const file = (data: Buffer | string, name = `f${n++}.tar`) => {
  const p = join(work, name);
  writeFileSync(p, data);
  return p;
};

/** Runs a command that must fail: one line, the documented code, no stack, no temp files. */
async function fails(args: string[], code: number, pattern: RegExp): Promise<CliResult> {
  const tmp = mkdtempSync(join(work, 'tmp-'));
  const cache = mkdtempSync(join(work, 'cache-'));
  const r = await runCli(args, { env: { TMPDIR: tmp, TARPUSH_CACHE_DIR: cache } });
  assert.equal(r.code, code, `exit code for ${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line of error, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^tarpush: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.deepEqual(readdirSync(tmp), [], 'no temp files left');
  return r;
}

const layer = await layerTar({ 'etc/hello': 'hello\n' });
const goodSave = await dockerSave([{ tags: ['example.com/app:1'], layers: [layer] }]);

test('missing, empty and random files', async () => {
  await fails(['digest', join(work, 'nope.tar')], 3, /nope\.tar: no such file/);
  await fails(['digest', file('')], 3, /is empty/);
  await fails(['load', file(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)))], 3, /not a tar archive/);
});

test('a plain filesystem tar is not an image', async () => {
  await fails(['digest', file(await layerTar({ 'bin/sh': 'x', 'etc/passwd': 'root' }))], 3, /not a container image/);
});

test('manifest.json null, empty or missing', async () => {
  await fails(['digest', file(await packTar([{ name: 'manifest.json', data: 'null' }]))], 3, /manifest\.json: is null/);
  await fails(['digest', file(await packTar([{ name: 'manifest.json', data: '[]' }]))], 3, /manifest\.json: is an empty list/);
  await fails(['digest', file(await packTar([{ name: 'repositories', data: '{}' }, { name: 'abc/layer.tar', data: layer }]))], 3, /no manifest\.json/);
  await fails(['digest', file(await packTar([{ name: 'manifest.json', data: '{"not":' }]))], 3, /manifest\.json: is not valid JSON/);
});

test('index.json empty or not an index', async () => {
  await fails(['digest', file(await packTar([{ name: 'oci-layout', data: '{}' }, { name: 'index.json', data: '' }]))], 3, /index\.json: is empty/);
  await fails(['digest', file(await packTar([{ name: 'index.json', data: '{"schemaVersion":2,"manifests":{}}' }]))], 3, /index\.json: is not an OCI image index/);
  await fails(['digest', file(await packTar([{ name: 'index.json', data: '{"schemaVersion":2,"manifests":[]}' }]))], 3, /index\.json: lists no manifests/);
});

test('blobs whose bytes do not match their digest or size', async () => {
  // Legacy: the layer is not what the config's diff_id says.
  const other = await layerTar({ 'etc/other': 'x' });
  const cfg = JSON.stringify({ os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [`sha256:${sha(other)}`] } });
  const lying = await packTar([
    { name: 'c.json', data: cfg },
    { name: 'l/layer.tar', data: layer },
    { name: 'manifest.json', data: JSON.stringify([{ Config: 'c.json', RepoTags: ['x:1'], Layers: ['l/layer.tar'] }]) },
  ]);
  await fails(['digest', file(lying)], 3, /l\/layer\.tar has diff_id sha256:[a-f0-9]{64} but the config says/);
  // OCI layout: a manifest blob altered after the fact.
  const dir = join(work, 'layout-mismatch');
  const [img] = ociLayout(dir, [{ tags: ['v1'], layers: [layer] }]);
  writeFileSync(join(dir, 'blobs', 'sha256', img!.manifestDigest.slice(7)), img!.manifest.toString().replace('schemaVersion', 'schemaversion'));
  await fails(['load', dir], 3, /does not match its descriptor/);
});

test('a layer missing from the archive', async () => {
  const missing = await packTar([
    { name: 'c.json', data: JSON.stringify({ rootfs: { type: 'layers', diff_ids: [`sha256:${sha(layer)}`] } }) },
    { name: 'manifest.json', data: JSON.stringify([{ Config: 'c.json', RepoTags: ['x:1'], Layers: ['gone/layer.tar'] }]) },
  ]);
  await fails(['digest', file(missing)], 3, /layer gone\/layer\.tar is missing from the archive/);
  const dir = join(work, 'layout-missing');
  ociLayout(dir, [{ tags: ['v1'], layers: [layer] }]);
  const blobs = readdirSync(join(dir, 'blobs', 'sha256'));
  const gz = blobs.find((b) => readFileSync(join(dir, 'blobs', 'sha256', b))[0] === 0x1f)!;
  rmSync(join(dir, 'blobs', 'sha256', gz));
  await fails(['load', dir], 3, new RegExp(`blob sha256:${gz} .*is missing`));
});

test('truncated gzip archive', async () => {
  const gz = gzipSync(goodSave);
  await fails(['digest', file(gz.subarray(0, Math.floor(gz.length / 2)), 'cut.tar.gz')], 3, /cut\.tar\.gz: .*(truncated|unexpected end)/i);
});

test('path traversal and absolute names are refused', async () => {
  await fails(['digest', file(await packTar([{ name: '../evil', data: 'x' }, { name: 'manifest.json', data: '[]' }]))], 3, /unsafe entry name/);
  await fails(['digest', file(await packTar([{ name: '/etc/evil', data: 'x' }, { name: 'manifest.json', data: '[]' }]))], 3, /unsafe entry name|absolute/);
});

test('usage errors exit 2; --debug adds the stack', async () => {
  await fails(['digest'], 2, /Not enough non-option arguments|source/i);
  await fails(['digest', file(goodSave), '--image', 'nothing:here'], 2, /no image matches --image nothing:here; choices: @0 example\.com\/app:1/);
  await fails(['digest', file(goodSave), '--platform', 'linux'], 2, /invalid platform "linux"/);
  const r = await runCli(['digest', join(work, 'nope.tar'), '--debug']);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /\n\s+at /, '--debug shows the stack');
});

test('the good archive works: digest is stable and load shows it', async () => {
  const path = file(goodSave);
  const cache = mkdtempSync(join(work, 'cache-'));
  const a = await runCli(['digest', path], { env: { TARPUSH_CACHE_DIR: cache } });
  const b = await runCli(['digest', path, '--no-cache']);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /^sha256:[a-f0-9]{64}\n$/);
  assert.equal(a.stdout, b.stdout, 'cached and uncached digests agree');
  const load = await runCli(['load', path, '--json'], { env: { TARPUSH_CACHE_DIR: cache } });
  const doc = JSON.parse(load.stdout);
  assert.equal(doc.images[0].digest, a.stdout.trim());
  assert.deepEqual(doc.images[0].tags, ['example.com/app:1']);
  assert.equal(doc.images[0].manifests[0].platform, 'linux/amd64');
});
