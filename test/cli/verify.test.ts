/**
 * End-to-end tests of `tarpush verify`: good inputs of every kind pass; each kind of damage is
 * found, named (blob and reason) and reported together with every other; `verify SOURCE REF`
 * compares with the real registry (docker-registry 2.8).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { tempDir } from '../helpers/tmp.js';
import { packTar, TESTDATA } from '../archive/fixtures.js';
import { craneTarball, dockerSave, layerTar, ociLayout, sha } from '../fixtures/images.js';

let reg: TestRegistry;
let proxy: FaultProxy;
let work: string;
/** A good OCI layout: one image (tag v1), two gzip layers. Tests copy it before damaging it. */
let layout: string;
let manifestDigest: string;
let configDigest: string;
let layerDigests: string[];
let legacyFile: string;
let legacyDiffIds: string[];
let legacyLayerIds: string[];
let craneFile: string;
/** Same as `layout` but with a different second layer, pushed to other/app:1. */
let otherLayout: string;
let otherLayer1: string;

const LAYER_TEXT = 'the first layer of the verify test image\n';
const SECOND_TEXT = 'the second layer\n';

function cli(args: string[]): Promise<CliResult> {
  return runCli(args, { env: { TARPUSH_CACHE_DIR: join(work, 'cache') } });
}

async function verify(args: string[], code: number): Promise<CliResult> {
  const r = await cli(['verify', '-q', ...args]);
  assert.equal(r.code, code, `tarpush verify ${args.join(' ')}: exit ${r.code}, expected ${code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  return r;
}

interface Finding { digest?: string; path?: string; problem: string }
interface JsonReport { ok: boolean; problems: Finding[]; warnings: Finding[]; checked: { manifests: number; configs: number; layers: number; bytes: number } }

async function verifyJson(args: string[], code: number): Promise<JsonReport> {
  const r = await verify(['--json', ...args], code);
  return JSON.parse(r.stdout) as JsonReport;
}

/** The `problem:` lines of a text report. */
function problems(stdout: string): string[] {
  return stdout.split('\n').filter((l) => l.startsWith('problem: '));
}

const blob = (dir: string, digest: string) => join(dir, 'blobs', 'sha256', digest.slice(7));

function copyLayout(t: { after(fn: () => unknown): void }, from = layout): string {
  const dir = join(tempDir(t), 'layout');
  cpSync(from, dir, { recursive: true });
  return dir;
}

function flipByte(file: string, at: number): void {
  const b = readFileSync(file);
  b[at]! ^= 0xff;
  writeFileSync(file, b);
}

/**
 * Rewrites the config of the layout's only image with `edit`, then the manifest and index.json
 * that lead to it, so the only thing wrong is what `edit` did. The old blobs are removed.
 */
function editConfig(dir: string, edit: (config: { rootfs: { diff_ids: string[] } }) => void): { manifest: string; config: string } {
  const indexFile = join(dir, 'index.json');
  const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { manifests: { digest: string; size: number }[] };
  const oldManifest = index.manifests[0]!.digest;
  const manifest = JSON.parse(readFileSync(blob(dir, oldManifest), 'utf8')) as { config: { digest: string; size: number } };
  const oldConfig = manifest.config.digest;
  const config = JSON.parse(readFileSync(blob(dir, oldConfig), 'utf8')) as { rootfs: { diff_ids: string[] } };
  edit(config);
  const configBytes = Buffer.from(JSON.stringify(config));
  const newConfig = `sha256:${sha(configBytes)}`;
  writeFileSync(blob(dir, newConfig), configBytes);
  manifest.config = { ...manifest.config, digest: newConfig, size: configBytes.length };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const newManifest = `sha256:${sha(manifestBytes)}`;
  writeFileSync(blob(dir, newManifest), manifestBytes);
  index.manifests[0] = { ...index.manifests[0]!, digest: newManifest, size: manifestBytes.length };
  writeFileSync(indexFile, JSON.stringify(index));
  rmSync(blob(dir, oldConfig));
  rmSync(blob(dir, oldManifest));
  return { manifest: newManifest, config: newConfig };
}

before(async () => {
  work = tempDir(undefined, 'tarpush-verify-test-');
  mkdirSync(join(work, 'cache'));
  const l0 = await layerTar({ 'etc/first': LAYER_TEXT });
  const l1 = await layerTar({ 'etc/second': SECOND_TEXT });
  const l1b = await layerTar({ 'etc/second': 'another second layer\n' });

  layout = join(work, 'layout');
  const [img] = ociLayout(layout, [{ tags: ['v1'], layers: [l0, l1] }]);
  manifestDigest = img!.manifestDigest;
  const m = JSON.parse(img!.manifest.toString()) as { config: { digest: string }; layers: { digest: string }[] };
  configDigest = m.config.digest;
  layerDigests = m.layers.map((l) => l.digest);

  otherLayout = join(work, 'other-layout');
  const [other] = ociLayout(otherLayout, [{ tags: ['v1'], layers: [l0, l1b] }]);
  otherLayer1 = (JSON.parse(other!.manifest.toString()) as { layers: { digest: string }[] }).layers[1]!.digest;

  legacyFile = join(work, 'legacy.tar');
  writeFileSync(legacyFile, await dockerSave([{ tags: ['example.com/app:1'], layers: [l0, l1] }]));
  legacyDiffIds = [l0, l1].map((l) => `sha256:${sha(l)}`);
  // dockerSave names each layer directory by the sha256 of its diff_id's hex.
  legacyLayerIds = [l0, l1].map((l) => sha(sha(l)));
  craneFile = join(work, 'crane.tar');
  writeFileSync(craneFile, await craneTarball({ tags: ['example.com/app:1'], layers: [l0, l1] }));

  reg = await startRegistry();
  proxy = await startProxy({ url: reg.url });
  for (const [src, repo] of [[layout, 'app'], [otherLayout, 'other/app'], [legacyFile, 'legacy/app'], [craneFile, 'crane/app']] as const) {
    const r = await cli(['push', '-q', src, `${reg.host}/${repo}:1`]);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(async () => {
  await proxy?.stop();
  await reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

test('good inputs pass: legacy docker save, crane tarball, OCI layout, test vectors, registry ref', async () => {
  for (const input of [
    legacyFile,
    craneFile,
    layout,
    join(TESTDATA, 'dive/.data/test-docker-image.tar'),
    join(TESTDATA, 'dive/.data/test-oci-zstd-image.tar'),
    join(TESTDATA, 'regclient/testdata/testrepo'),
  ]) {
    const r = await verify([input], 0);
    assert.equal(problems(r.stdout).length, 0, r.stdout);
    assert.match(r.stdout, /: ok \(\d+ manifest\(s\), \d+ config\(s\), \d+ layer\(s\), \d+ bytes checked\)\n$/);
  }
  const remote = await verify([`${reg.host}/app:1`], 0);
  assert.match(remote.stdout, /: ok \(1 manifest\(s\), 1 config\(s\), 2 layer\(s\)/);

  const report = await verifyJson([layout], 0);
  assert.equal(report.ok, true);
  assert.deepEqual(report.problems, []);
  assert.deepEqual({ ...report.checked, bytes: 0 }, { manifests: 1, configs: 1, layers: 2, bytes: 0 });
});

test('verify - reads the image from standard input', async () => {
  for (const [file, layers] of [[legacyFile, 2], [craneFile, 2]] as const) {
    const r = await runCli(['verify', '-q', '-'], { input: readFileSync(file), env: { TARPUSH_CACHE_DIR: join(work, 'cache') } });
    assert.equal(r.code, 0, `verify - < ${file}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, new RegExp(`: ok \\(1 manifest\\(s\\), 1 config\\(s\\), ${layers} layer\\(s\\)`));
  }
  const bad = readFileSync(legacyFile);
  bad[bad.indexOf(LAYER_TEXT) + 4]! ^= 0x20;
  const r = await runCli(['verify', '-q', '-'], { input: bad, env: { TARPUSH_CACHE_DIR: join(work, 'cache') } });
  assert.equal(r.code, 1, `a damaged archive on stdin fails verification: ${r.stdout}${r.stderr}`);
});

test('a flipped byte in an OCI layout layer blob', async (t) => {
  const dir = copyLayout(t);
  flipByte(blob(dir, layerDigests[0]!), 40);
  const r = await verify([dir], 1);
  const found = problems(r.stdout);
  assert.ok(found.length >= 1);
  assert.ok(found.some((p) => p.includes(layerDigests[0]!) && /does not match its digest|hashes to/.test(p)), r.stdout);
  assert.ok(found.every((p) => p.includes(layerDigests[0]!)), `only that layer is blamed:\n${r.stdout}`);
});

test('a flipped byte in a layer blob of an OCI layout tar', async (t) => {
  const entries = ['oci-layout', 'index.json', ...readdirSync(join(layout, 'blobs', 'sha256')).map((f) => `blobs/sha256/${f}`)];
  const bytes = await packTar(entries.map((name) => ({ name, data: readFileSync(join(layout, name)) })));
  const layer = readFileSync(blob(layout, layerDigests[1]!));
  const at = bytes.indexOf(layer);
  assert.ok(at > 0);
  bytes[at + 30]! ^= 0xff;
  const file = join(tempDir(t), 'oci.tar');
  writeFileSync(file, bytes);
  const r = await verify([file], 1);
  const found = problems(r.stdout);
  assert.ok(found.some((p) => p.includes(layerDigests[1]!) && /does not match its digest|hashes to/.test(p)), r.stdout);
  assert.ok(found.every((p) => p.includes(layerDigests[1]!)), `only that layer is blamed:\n${r.stdout}`);
});

test('a flipped byte in a legacy layer.tar', async (t) => {
  const file = join(tempDir(t), 'legacy.tar');
  const bytes = readFileSync(legacyFile);
  const at = bytes.indexOf(LAYER_TEXT);
  assert.ok(at > 0);
  bytes[at + 4]! ^= 0x20;
  writeFileSync(file, bytes);
  const r = await verify([file], 1);
  const found = problems(r.stdout);
  assert.equal(found.length, 1, r.stdout);
  // The layer is named by the digest it should have (its diff_id) or by its file in the archive.
  assert.match(found[0]!, new RegExp(`${legacyDiffIds[0]}|${legacyLayerIds[0]}/layer\\.tar`));
  assert.match(found[0]!, /does not match|hashes to|diff_id/);
});

test('a truncated blob', async (t) => {
  const dir = copyLayout(t);
  const file = blob(dir, layerDigests[1]!);
  const size = readFileSync(file).length;
  truncateSync(file, Math.floor(size / 2));
  const r = await verify([dir], 1);
  const found = problems(r.stdout);
  assert.ok(found.some((p) => p.includes(layerDigests[1]!) && new RegExp(`truncated|has ${Math.floor(size / 2)} bytes where ${size} were expected`).test(p)), r.stdout);
});

test('a missing blob', async (t) => {
  const dir = copyLayout(t);
  rmSync(blob(dir, layerDigests[1]!));
  const r = await verify([dir], 1);
  const found = problems(r.stdout);
  assert.ok(found.some((p) => p.includes(layerDigests[1]!) && /missing/.test(p)), r.stdout);
});

test('a config whose diff_ids do not match the layers', async (t) => {
  const dir = copyLayout(t);
  const wrong = `sha256:${sha('not the layer')}`;
  editConfig(dir, (c) => { c.rootfs.diff_ids[1] = wrong; });
  const r = await verify([dir], 1);
  const found = problems(r.stdout);
  assert.equal(found.length, 1, r.stdout);
  assert.match(found[0]!, new RegExp(`layer 1 \\(${layerDigests[1]}\\)`));
  assert.match(found[0]!, new RegExp(wrong));
  assert.match(found[0]!, /diff_id/);
});

test('a config with the wrong number of diff_ids', async (t) => {
  const dir = copyLayout(t);
  const { config } = editConfig(dir, (c) => { c.rootfs.diff_ids.pop(); });
  const r = await verify([dir], 1);
  const found = problems(r.stdout);
  assert.equal(found.length, 1, r.stdout);
  assert.match(found[0]!, new RegExp(config));
  assert.match(found[0]!, /lists 1 diff_ids but the manifest has 2 layers/);
});

test('a layout blob renamed (its file name is not its hash)', async (t) => {
  const dir = copyLayout(t);
  const wrongName = `sha256:${sha('some other content')}`;
  renameSync(blob(dir, layerDigests[0]!), blob(dir, wrongName));
  const r = await verify([dir], 1);
  const found = problems(r.stdout);
  // The layer the manifest wants is gone, and the file found holds something other than its name.
  assert.ok(found.some((p) => p.includes(layerDigests[0]!) && /missing/.test(p)), r.stdout);
  assert.ok(found.some((p) => p.includes(wrongName.slice(7)) && /does not hold what its name says|hashes to/.test(p)), r.stdout);
});

test('every problem is reported, not just the first; --json is machine-readable', async (t) => {
  const dir = copyLayout(t);
  flipByte(blob(dir, layerDigests[0]!), 40);
  rmSync(blob(dir, layerDigests[1]!));
  const r = await verify([dir], 1);
  const found = problems(r.stdout);
  assert.ok(found.some((p) => p.includes(layerDigests[0]!)), `the flipped layer is reported:\n${r.stdout}`);
  assert.ok(found.some((p) => p.includes(layerDigests[1]!) && /missing/.test(p)), `the missing layer is reported:\n${r.stdout}`);
  assert.match(r.stdout, /: \d+ problem\(s\)/);

  const report = await verifyJson([dir], 1);
  assert.equal(report.ok, false);
  assert.ok(Array.isArray(report.problems) && report.problems.length >= 2);
  for (const p of report.problems) assert.equal(typeof p.problem, 'string');
  const digests = new Set(report.problems.map((p) => p.digest));
  assert.ok(digests.has(layerDigests[0]!) && digests.has(layerDigests[1]!), JSON.stringify(report.problems));
});

test('a legacy archive with two damaged layers: both are reported', async (t) => {
  const file = join(tempDir(t), 'legacy.tar');
  const bytes = readFileSync(legacyFile);
  for (const text of [LAYER_TEXT, SECOND_TEXT]) {
    const at = bytes.indexOf(text);
    assert.ok(at > 0);
    bytes[at + 4]! ^= 0x20;
  }
  writeFileSync(file, bytes);
  const r = await verify([file], 1);
  const found = problems(r.stdout);
  const names = legacyLayerIds.map((id) => `${id}/layer.tar`);
  assert.ok(found.some((p) => p.includes(names[0]!) || p.includes(legacyDiffIds[0]!)), `layer 0 is reported:\n${r.stdout}`);
  assert.ok(found.some((p) => p.includes(names[1]!) || p.includes(legacyDiffIds[1]!)), `layer 1 is reported:\n${r.stdout}`);
});

test('a registry serving a layer with wrong content fails verify REF, naming the layer', async () => {
  proxy.clearRules();
  proxy.addRule({ method: 'GET', path: new RegExp(`/blobs/${layerDigests[1]}$`), action: { kind: 'corrupt-response', offset: 20 } });
  try {
    const r = await verify([`${proxy.host}/app:1`], 1);
    const found = problems(r.stdout);
    assert.equal(found.length, 1, r.stdout);
    assert.match(found[0]!, new RegExp(`${layerDigests[1]}.*does not match its digest`));
  } finally {
    proxy.clearRules();
  }
});

test('verify SOURCE REF: the same image is "same"; a different one says which layer differs', async () => {
  // Inputs without a manifest are compared as push sends them (layers gzipped by tarpush).
  for (const [local, repo] of [[layout, 'app'], [legacyFile, 'legacy/app'], [craneFile, 'crane/app']] as const) {
    const same = await verify([local, `${reg.host}/${repo}:1`], 0);
    assert.match(same.stdout, new RegExp(`${reg.host}/${repo}:1: same image\n$`));
    assert.ok(!same.stdout.includes('differs:'), same.stdout);
  }
  const diff = await verify([layout, `${reg.host}/other/app:1`], 1);
  assert.match(diff.stdout, new RegExp(`${reg.host}/other/app:1: differs from the local image`));
  const differs = diff.stdout.split('\n').filter((l) => l.startsWith('differs: '));
  const layerLine = differs.find((l) => /layer 1/.test(l));
  assert.ok(layerLine, `names layer 1:\n${diff.stdout}`);
  assert.match(layerLine, new RegExp(layerDigests[1]!));
  assert.match(layerLine, new RegExp(otherLayer1));
  assert.ok(!differs.some((l) => /layer 0/.test(l)), `layer 0 is the same:\n${diff.stdout}`);

  const json = JSON.parse((await verify(['--json', layout, `${reg.host}/other/app:1`], 1)).stdout) as { ok: boolean; comparison: { same: boolean; differences: string[] } };
  assert.equal(json.ok, false);
  assert.equal(json.comparison.same, false);
  assert.ok(json.comparison.differences.some((d) => d.includes(otherLayer1)));
});

test('an unreferenced blob in a layout is a warning, not a failure', async (t) => {
  const dir = copyLayout(t);
  const stray = Buffer.from('left over from an earlier image\n');
  const digest = `sha256:${sha(stray)}`;
  writeFileSync(blob(dir, digest), stray);
  const r = await verify([dir], 0);
  assert.equal(problems(r.stdout).length, 0, r.stdout);
  const warnings = r.stdout.split('\n').filter((l) => l.startsWith('warning: '));
  assert.ok(warnings.some((w) => w.includes(digest.slice(7)) && /unreferenced/.test(w)), r.stdout);
  const report = await verifyJson([dir], 0);
  assert.equal(report.ok, true);
  assert.ok(report.warnings.some((w) => w.digest === digest && /unreferenced/.test(w.problem)), JSON.stringify(report.warnings));
});
