/**
 * End-to-end tests of `tarpush pull`: the real registry (docker-registry 2.8), skopeo as an
 * independent client both to put images in and to read what pull wrote, and the fault proxy for
 * dropped and corrupted downloads.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { runCli, TARPUSH_BIN, type CliResult } from '../helpers/cli.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { skopeo } from '../helpers/skopeo.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';
import { TESTDATA } from '../archive/fixtures.js';
import { layerTar, ociLayout, randomBytes } from '../fixtures/images.js';

const MULTI_DIR = join(TESTDATA, 'stereoscope/pkg/image/oci/testdata/multiplatform_oci_dir');
const MULTI_INDEX = 'sha256:a1a8d08faa5fe3d2ccc0ba54874e39dede9a17120f883c5cb56f2fd9309067c8';
const MULTI_AMD64 = 'sha256:e7c26a4b4d156fd9947ee82295b7b78acf7aa54b93b8f3e4b9f608179ffb20e8';
const MULTI_ARM64 = 'sha256:5ed07065bcbc6c52e3ad28526557d7b6833613fc79257b1a786de85e37c03b05';

let reg: TestRegistry;
let proxy: FaultProxy;
let work: string;
/** The image skopeo put at src/app:1 (OCI, gzip layers). */
let srcDigest: string;
let srcLayers: string[];
/** A second image sharing srcLayers[0], at other/app:2. */
let otherDigest: string;
/** An image with one ~2 MB incompressible layer, at big/app:1. */
let bigDigest: string;
let bigLayer: string;
/** Per-run cache dir, so no test reads or writes the user's cache. */
let cacheDir: string;

const DIGEST_LINE = /^sha256:[a-f0-9]{64}$/;

function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, { env: { TARPUSH_CACHE_DIR: cacheDir, XDG_CACHE_HOME: cacheDir, ...env } });
}

async function ok(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const r = await cli(args, env);
  assert.equal(r.code, 0, `tarpush ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
  return r;
}

/** The digest in `REF@sha256:…` lines printed by push and pull (one per image). */
function printedDigests(stdout: string): string[] {
  return stdout.trim().split('\n').map((line) => {
    const m = /@(sha256:[a-f0-9]{64})$/.exec(line);
    assert.ok(m, `expected REF@DIGEST, got ${JSON.stringify(line)}`);
    return m[1]!;
  });
}

async function tarEntries(buf: Buffer): Promise<Map<string, Buffer[]>> {
  const entries = new Map<string, Buffer[]>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => { chunks.push(c as Buffer); });
      stream.on('end', () => {
        const list = entries.get(header.name) ?? [];
        list.push(Buffer.concat(chunks));
        entries.set(header.name, list);
        next();
      });
      stream.resume();
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  extract.end(buf);
  await done;
  return entries;
}

function only(entries: Map<string, Buffer[]>, name: string): Buffer {
  const list = entries.get(name);
  assert.ok(list, `${name} is in the archive`);
  assert.equal(list.length, 1, `${name} is stored once`);
  return list[0]!;
}

interface DockerEntry { Config: string; RepoTags: string[] | null; Layers: string[] }
interface IndexEntry { digest: string; mediaType: string; annotations?: Record<string, string> }

before(async () => {
  work = tempDir(undefined, 'tarpush-pull-test-');
  cacheDir = join(work, 'cache');
  mkdirSync(cacheDir);
  reg = await startRegistry();
  proxy = await startProxy({ url: reg.url });

  const shared = await layerTar({ 'etc/shared': 'shared by two images\n' });
  const a = await layerTar({ 'etc/a': 'only in src/app\n' });
  const b = await layerTar({ 'etc/b': 'only in other/app\n' });
  const layoutDir = join(work, 'seed-layout');
  const [src, other, big] = ociLayout(layoutDir, [
    { tags: ['src-1'], layers: [shared, a] },
    { tags: ['other-2'], layers: [shared, b] },
    { tags: ['big-1'], layers: [await layerTar({ 'big.bin': randomBytes(2_000_000) })] },
  ]);
  srcDigest = src!.manifestDigest;
  srcLayers = (JSON.parse(src!.manifest.toString()) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
  otherDigest = other!.manifestDigest;
  bigDigest = big!.manifestDigest;
  bigLayer = (JSON.parse(big!.manifest.toString()) as { layers: { digest: string }[] }).layers[0]!.digest;
  // skopeo (not tarpush) puts the images in, so the round trip is checked against another client.
  for (const [ref, repo] of [['src-1', 'src/app:1'], ['other-2', 'other/app:2'], ['big-1', 'big/app:1']] as const) {
    await skopeo(['copy', '--quiet', '--dest-tls-verify=false', `oci:${layoutDir}:${ref}`, `docker://${reg.host}/${repo}`]);
  }
  // The same image converted by skopeo to Docker schema 2 media types (its own digest).
  await skopeo(['copy', '--quiet', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${layoutDir}:src-1`, `docker://${reg.host}/v2s2/app:1`]);
  const pushed = await ok(['push', '-q', MULTI_DIR, `${reg.host}/multi/app:1`]);
  assert.deepEqual(printedDigests(pushed.stdout), [MULTI_INDEX]);
});

after(async () => {
  await proxy?.stop();
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('round trip: skopeo push → tarpush pull → tarpush push keeps the digest; skopeo reads the archive both ways', async (t) => {
  const dir = tempDir(t);
  const inspected = JSON.parse(await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/src/app:1`])) as { Digest: string };
  assert.equal(inspected.Digest, srcDigest, 'skopeo kept the layout manifest as it was');

  const x = join(dir, 'x.tar');
  const pulled = await ok(['pull', '-q', `${reg.host}/src/app:1`, x]);
  assert.equal(pulled.stdout, `${reg.host}/src/app:1@${srcDigest}\n`);

  const pushed = await ok(['push', '-q', x, `${reg.host}/dst/app:1`]);
  assert.deepEqual(printedDigests(pushed.stdout), [inspected.Digest]);
  const dst = JSON.parse(await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/dst/app:1`])) as { Digest: string };
  assert.equal(dst.Digest, inspected.Digest, 'the registry holds the same digest after the round trip');

  // The file is both a docker-archive and an OCI archive to skopeo.
  const asDocker = JSON.parse(await skopeo(['inspect', `docker-archive:${x}`])) as { Layers: string[] };
  assert.equal(asDocker.Layers.length, 2);
  const asOci = JSON.parse(await skopeo(['inspect', `oci-archive:${x}`])) as { Digest: string; Layers: string[] };
  assert.equal(asOci.Digest, srcDigest, 'oci-archive: the manifest is stored as served');
  assert.deepEqual(asOci.Layers, srcLayers);
  const out = join(dir, 'out');
  await skopeo(['copy', '--quiet', `docker-archive:${x}`, `oci:${out}:t`]);
  const copied = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests: IndexEntry[] };
  assert.equal(copied.manifests.length, 1, 'skopeo copied the image out of the docker-archive view');

  // And the pulled file is self-consistent for tarpush too.
  await ok(['verify', '-q', x]);
  const digest = await ok(['digest', x]);
  assert.equal(digest.stdout.trim(), srcDigest);
});

test('round trip of a Docker schema 2 image keeps the digest skopeo pushed', async (t) => {
  const dir = tempDir(t);
  const inspected = JSON.parse(await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/v2s2/app:1`])) as { mediaType: string };
  assert.equal(inspected.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  const { Digest } = JSON.parse(await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/v2s2/app:1`])) as { Digest: string };
  assert.notEqual(Digest, srcDigest);
  const x = join(dir, 'x.tar');
  assert.deepEqual(printedDigests((await ok(['pull', '-q', `${reg.host}/v2s2/app:1`, x])).stdout), [Digest]);
  assert.deepEqual(printedDigests((await ok(['push', '-q', x, `${reg.host}/v2s2-copy/app:1`])).stdout), [Digest]);
  const asDocker = JSON.parse(await skopeo(['inspect', `docker-archive:${x}`])) as { Layers: string[] };
  assert.equal(asDocker.Layers.length, 2);
  const asOci = JSON.parse(await skopeo(['inspect', `oci-archive:${x}`])) as { Digest: string };
  assert.equal(asOci.Digest, Digest);
});

test('multi-platform index: --all-platforms keeps the index digest; default and --platform pick one manifest', async (t) => {
  const dir = tempDir(t);
  const ref = `${reg.host}/multi/app:1`;

  const all = join(dir, 'all.tar');
  const pulledAll = await ok(['pull', '-q', '--all-platforms', ref, all]);
  assert.deepEqual(printedDigests(pulledAll.stdout), [MULTI_INDEX]);
  assert.equal((await ok(['digest', all])).stdout.trim(), MULTI_INDEX);
  const pushedAll = await ok(['push', '-q', all, `${reg.host}/multi-copy/app:1`]);
  assert.deepEqual(printedDigests(pushedAll.stdout), [MULTI_INDEX]);
  const raw = JSON.parse(await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/multi-copy/app:1`])) as { manifests: { digest: string }[] };
  assert.deepEqual(raw.manifests.map((m) => m.digest).sort(), [MULTI_AMD64, MULTI_ARM64].sort());

  // Without a flag: this machine's platform, as docker and skopeo do.
  const host = process.arch === 'x64' ? MULTI_AMD64 : process.arch === 'arm64' ? MULTI_ARM64 : undefined;
  const def = join(dir, 'default.tar');
  const pulledDef = await cli(['pull', '-q', ref, def]);
  if (host) {
    assert.equal(pulledDef.code, 0, pulledDef.stderr);
    assert.deepEqual(printedDigests(pulledDef.stdout), [host]);
    assert.equal((await ok(['digest', def])).stdout.trim(), host);
  }

  const arm = join(dir, 'arm.tar');
  const pulledArm = await ok(['pull', '-q', '--platform', 'linux/arm64', ref, arm]);
  assert.deepEqual(printedDigests(pulledArm.stdout), [MULTI_ARM64]);
  assert.equal((await ok(['digest', arm])).stdout.trim(), MULTI_ARM64);
  const pushedArm = await ok(['push', '-q', arm, `${reg.host}/multi-arm/app:1`]);
  assert.deepEqual(printedDigests(pushedArm.stdout), [MULTI_ARM64]);

  const none = join(dir, 'none.tar');
  const unknown = await cli(['pull', '-q', '--platform', 'linux/s390x', ref, none]);
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /linux\/s390x/);
  assert.match(unknown.stderr, /linux\/amd64/);
  assert.match(unknown.stderr, /linux\/arm64/);
  assert.equal(unknown.stdout, '');
  assert.deepEqual(readdirSync(dir).sort(), ['all.tar', 'arm.tar', 'default.tar'].filter((f) => host || f !== 'default.tar'), 'no output for the failed pull');
});

test('several refs into one archive: shared blobs stored once, one manifest.json entry per image', async (t) => {
  const dir = tempDir(t);
  const x = join(dir, 'both.tar');
  const r = await ok(['pull', '-q', `${reg.host}/src/app:1`, `${reg.host}/other/app:2`, x]);
  assert.deepEqual(printedDigests(r.stdout), [srcDigest, otherDigest]);

  const entries = await tarEntries(readFileSync(x));
  for (const [name, list] of entries) assert.equal(list.length, 1, `${name} appears ${list.length} times in the tar`);
  const blobs = [...entries.keys()].filter((n) => /^blobs\/sha256\/[a-f0-9]{64}$/.test(n));
  // 2 manifests + 2 configs + 3 distinct layers (one shared).
  assert.equal(blobs.length, 7, `blobs: ${blobs.join(', ')}`);
  assert.ok(blobs.includes(`blobs/sha256/${srcLayers[0]!.slice(7)}`), 'the shared layer is there');

  const manifest = JSON.parse(only(entries, 'manifest.json').toString()) as DockerEntry[];
  assert.equal(manifest.length, 2);
  assert.deepEqual(manifest.map((e) => e.RepoTags), [[`${reg.host}/src/app:1`], [`${reg.host}/other/app:2`]]);
  for (const e of manifest) {
    assert.ok(entries.has(e.Config), `${e.Config} is in the archive`);
    for (const l of e.Layers) assert.ok(entries.has(l), `${l} is in the archive`);
  }
  assert.equal(manifest[0]!.Layers[0], manifest[1]!.Layers[0], 'both entries point at the one shared layer');

  const index = JSON.parse(only(entries, 'index.json').toString()) as { manifests: IndexEntry[] };
  assert.deepEqual(
    index.manifests.map((m) => [m.digest, m.annotations?.['io.containerd.image.name']]),
    [[srcDigest, `${reg.host}/src/app:1`], [otherDigest, `${reg.host}/other/app:2`]],
  );

  // Each image can be picked out by its tag again.
  assert.equal((await ok(['digest', x, '--image', `${reg.host}/other/app:2`])).stdout.trim(), otherDigest);
  await ok(['verify', '-q', x]);
});

test('pull by digest works; a digest the registry does not have fails clearly', async (t) => {
  const dir = tempDir(t);
  const byDigest = join(dir, 'd.tar');
  const r = await ok(['pull', '-q', `${reg.host}/src/app@${srcDigest}`, byDigest]);
  assert.equal(r.stdout, `${reg.host}/src/app@${srcDigest}\n`);
  assert.equal((await ok(['digest', byDigest])).stdout.trim(), srcDigest);
  const entries = await tarEntries(readFileSync(byDigest));
  const index = JSON.parse(only(entries, 'index.json').toString()) as { manifests: IndexEntry[] };
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0]!.annotations?.['io.containerd.image.name'], `${reg.host}/src/app@${srcDigest}`);

  const wrong = `sha256:${'0'.repeat(63)}1`;
  const missing = join(dir, 'missing.tar');
  const bad = await cli(['pull', '-q', `${reg.host}/src/app@${wrong}`, missing]);
  assert.notEqual(bad.code, 0);
  assert.equal(bad.code, 6, bad.stderr);
  assert.match(bad.stderr, new RegExp(`${wrong}.*not found|MANIFEST_UNKNOWN`));
  assert.match(bad.stderr, /src\/app/);
  assert.equal(bad.stderr.trimEnd().split('\n').length, 1, `one line: ${bad.stderr}`);
  assert.ok(!existsSync(missing), 'no output file');
  assert.deepEqual(readdirSync(dir), ['d.tar']);
});

test('x.tar.gz output is gzip and loads again; oci:DIR output is a layout with the same digest', async (t) => {
  const dir = tempDir(t);
  const gz = join(dir, 'x.tar.gz');
  await ok(['pull', '-q', `${reg.host}/src/app:1`, gz]);
  const bytes = readFileSync(gz);
  assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b], 'gzip magic');
  const inner = await tarEntries(gunzipSync(bytes));
  assert.ok(inner.has('index.json') && inner.has('manifest.json') && inner.has('oci-layout'));
  const load = JSON.parse((await ok(['load', '--json', gz])).stdout) as { images: { digest: string; tags: string[] }[] };
  assert.deepEqual(load.images.map((i) => [i.digest, i.tags]), [[srcDigest, [`${reg.host}/src/app:1`]]]);

  const layout = join(dir, 'layout');
  // Different tags here: same-tag refs are the next test's subject.
  await ok(['pull', '-q', `${reg.host}/other/app:2`, `${reg.host}/multi/app:1`, '--all-platforms', `oci:${layout}`]);
  assert.ok(existsSync(join(layout, 'oci-layout')));
  assert.equal((await ok(['digest', layout, '--image', `${reg.host}/other/app:2`])).stdout.trim(), otherDigest);
  assert.equal((await ok(['digest', layout, '--image', `${reg.host}/multi/app:1`])).stdout.trim(), MULTI_INDEX);
  await ok(['verify', '-q', layout]);
});

test('several refs with the same tag into oci:DIR keep every image', async (t) => {
  // src/app:1 and big/app:1 share only the tag "1"; neither may replace the other in index.json.
  const layout = join(tempDir(t), 'layout');
  await ok(['pull', '-q', `${reg.host}/src/app:1`, `${reg.host}/big/app:1`, `oci:${layout}`]);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: IndexEntry[] };
  assert.deepEqual(
    index.manifests.map((m) => m.digest).sort(),
    [srcDigest, bigDigest].sort(),
    `index.json keeps both images: ${JSON.stringify(index.manifests.map((m) => m.annotations))}`,
  );
  assert.equal((await ok(['digest', layout, '--image', `${reg.host}/src/app:1`])).stdout.trim(), srcDigest);
  assert.equal((await ok(['digest', layout, '--image', `${reg.host}/big/app:1`])).stdout.trim(), bigDigest);
});

test('pulls run one after another into one oci:DIR add to it, whatever the tags', async (t) => {
  const layout = join(tempDir(t), 'mirror');
  await ok(['pull', '-q', `${reg.host}/other/app:2`, `oci:${layout}`]);
  await ok(['pull', '-q', `${reg.host}/src/app:1`, `oci:${layout}`]);
  await ok(['pull', '-q', `${reg.host}/big/app:1`, `oci:${layout}`]);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: IndexEntry[] };
  assert.deepEqual(
    index.manifests.map((m) => m.annotations?.['io.containerd.image.name']).sort(),
    [`${reg.host}/big/app:1`, `${reg.host}/other/app:2`, `${reg.host}/src/app:1`],
    `index.json: ${JSON.stringify(index.manifests.map((m) => [m.digest, m.annotations]))}`,
  );
});

test('a blob download dropped half-way resumes with a Range request', async (t) => {
  const dir = tempDir(t);
  proxy.clearRules();
  proxy.resetCounters();
  const rule = proxy.addRule({
    method: 'GET', path: new RegExp(`/blobs/${bigLayer}$`), times: 1,
    action: { kind: 'reset-after', bytes: 600_000, direction: 'response' },
  });
  try {
    const x = join(dir, 'big.tar');
    const r = await ok(['pull', '-q', `${proxy.host}/big/app:1`, x]);
    assert.deepEqual(printedDigests(r.stdout), [bigDigest]);
    assert.equal(rule.hits, 1, 'the fault fired');
    const gets = proxy.log.filter((l) => l.method === 'GET' && l.path.endsWith(`/blobs/${bigLayer}`));
    assert.deepEqual(gets.map((g) => g.status), [200, 206], 'a second, partial (Range) request');
    const blobSize = gets[0]!.responseBytes + gets[1]!.responseBytes;
    assert.equal(gets[0]!.responseBytes, 600_000);
    const entries = await tarEntries(readFileSync(x));
    assert.equal(only(entries, `blobs/sha256/${bigLayer.slice(7)}`).length, blobSize, 'resumed from where it stopped, not from 0');
    assert.equal((await ok(['digest', x])).stdout.trim(), bigDigest);
    await ok(['verify', '-q', x]);
    assert.deepEqual(readdirSync(dir), ['big.tar'], 'no temp files next to the output');
  } finally {
    proxy.clearRules();
  }
});

test('a download dropped three times resumes each time from where it stopped', async (t) => {
  const dir = tempDir(t);
  proxy.clearRules();
  proxy.resetCounters();
  proxy.addRule({
    method: 'GET', path: new RegExp(`/blobs/${bigLayer}$`), times: 3,
    action: { kind: 'reset-after', bytes: 300_000, direction: 'response' },
  });
  try {
    const x = join(dir, 'big.tar');
    const r = await ok(['pull', '-q', `${proxy.host}/big/app:1`, x]);
    assert.deepEqual(printedDigests(r.stdout), [bigDigest]);
    const gets = proxy.log.filter((l) => l.method === 'GET' && l.path.endsWith(`/blobs/${bigLayer}`));
    assert.deepEqual(gets.map((g) => g.status), [200, 206, 206, 206]);
    assert.deepEqual(gets.slice(0, 3).map((g) => g.responseBytes), [300_000, 300_000, 300_000]);
    const entries = await tarEntries(readFileSync(x));
    const stored = only(entries, `blobs/sha256/${bigLayer.slice(7)}`);
    assert.equal(gets.reduce((n, g) => n + g.responseBytes, 0), stored.length, 'no byte downloaded twice');
    assert.equal(`sha256:${createHash('sha256').update(stored).digest('hex')}`, bigLayer);
  } finally {
    proxy.clearRules();
  }
});

test('a blob served with wrong content fails the pull (exit 3, blob named) and leaves nothing behind', async (t) => {
  const dir = tempDir(t);
  const tmp = tempDir(t);
  proxy.clearRules();
  proxy.addRule({ method: 'GET', path: new RegExp(`/blobs/${bigLayer}$`), action: { kind: 'corrupt-response', offset: 1000 } });
  try {
    for (const out of [join(dir, 'bad.tar'), join(dir, 'bad.tar.gz'), `oci:${join(dir, 'layout')}`]) {
      const r = await cli(['pull', '-q', `${proxy.host}/big/app:1`, out], { TMPDIR: tmp });
      assert.equal(r.code, 3, `${out}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`blob ${bigLayer}`));
      assert.match(r.stderr, /does not match/);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.equal(r.stdout, '');
    }
    // The archives leave no file at all; the layout directory may exist, but never with the bad blob.
    const left = readdirSync(dir);
    assert.deepEqual(left.filter((f) => f !== 'layout'), [], `left in the output dir: ${left.join(', ')}`);
    if (left.includes('layout')) {
      const blobDir = join(dir, 'layout', 'blobs', 'sha256');
      const blobs = existsSync(blobDir) ? readdirSync(blobDir) : [];
      assert.ok(!blobs.includes(bigLayer.slice(7)), 'the corrupt blob is not stored under its digest');
      assert.deepEqual(blobs.filter((b) => !/^[a-f0-9]{64}$/.test(b)), [], `no temp files in the layout: ${blobs.join(', ')}`);
    }
    assert.deepEqual(readdirSync(tmp), [], 'no temp files in TMPDIR');
  } finally {
    proxy.clearRules();
  }
});

test('a failed pull leaves an existing output file as it was', async (t) => {
  const dir = tempDir(t);
  const out = join(dir, 'keep.tar');
  writeFileSync(out, 'the previous archive');
  proxy.clearRules();
  proxy.addRule({ method: 'GET', path: new RegExp(`/blobs/${bigLayer}$`), action: { kind: 'corrupt-response', offset: 10 } });
  try {
    const r = await cli(['pull', '-q', `${proxy.host}/src/app:1`, `${proxy.host}/big/app:1`, out]);
    assert.equal(r.code, 3, r.stderr);
  } finally {
    proxy.clearRules();
  }
  assert.equal(readFileSync(out, 'utf8'), 'the previous archive');
  assert.deepEqual(readdirSync(dir), ['keep.tar']);
});

test('Ctrl-C during a pull: exit 130, no output, no temp files', async (t) => {
  const dir = tempDir(t);
  const tmp = tempDir(t);
  proxy.clearRules();
  proxy.resetCounters();
  // The big layer arrives slowly enough to be interrupted in the middle.
  proxy.addRule({ method: 'GET', path: new RegExp(`/blobs/${bigLayer}$`), action: { kind: 'delay', ms: 3000 } });
  try {
    const child = spawn(process.execPath, [TARPUSH_BIN, 'pull', '-q', `${proxy.host}/big/app:1`, join(dir, 'x.tar')], {
      env: { ...process.env, TMPDIR: tmp, HOME: tmp, TARPUSH_CACHE_DIR: cacheDir }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const deadline = Date.now() + 10_000;
    while (!proxy.log.some((l) => l.path.endsWith(`/blobs/${bigLayer}`)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(Date.now() < deadline, 'the pull reached the big layer');
    assert.ok(readdirSync(dir).length > 0, 'the pull has its temp file by now (so the check below means something)');
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(timer);
    assert.equal(code, 130, stderr);
    assert.doesNotMatch(stderr, /\n\s+at /);
  } finally {
    proxy.clearRules();
  }
  assert.deepEqual(readdirSync(dir), [], 'no output file');
  assert.deepEqual(readdirSync(tmp), [], 'no temp files');
});

test('errors: unknown repository or tag (registry error), registry down (exit 4)', async (t) => {
  const dir = tempDir(t);
  const out = join(dir, 'x.tar');
  const noRepo = await cli(['pull', '-q', `${reg.host}/no/such:1`, out]);
  assert.equal(noRepo.code, 6, noRepo.stderr);
  assert.match(noRepo.stderr, /no\/such/);
  assert.match(noRepo.stderr, /NAME_UNKNOWN|MANIFEST_UNKNOWN/);

  const noTag = await cli(['pull', '-q', `${reg.host}/src/app:nope`, out]);
  assert.equal(noTag.code, 6, noTag.stderr);
  assert.match(noTag.stderr, /src\/app/);
  assert.match(noTag.stderr, /nope/);
  assert.match(noTag.stderr, /MANIFEST_UNKNOWN/);

  const closed = await freePort();
  const down = await cli(['pull', '-q', `127.0.0.1:${closed}/src/app:1`, out]);
  assert.equal(down.code, 4, down.stderr);
  assert.match(down.stderr, new RegExp(`127\\.0\\.0\\.1:${closed}`));
  assert.equal(down.stderr.trimEnd().split('\n').length, 1, `one line: ${down.stderr}`);
  assert.deepEqual(readdirSync(dir), [], 'no output left by failed pulls');
});
