import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { runCli, TARPUSH_BIN, REPO_ROOT } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { dockerAuth, installCredHelper, pathWith, writeDockerConfig } from '../helpers/credhelper.js';
import { dockerSave, layerTar, randomBytes, sizedLayer } from '../fixtures/images.js';
import { packTar } from '../archive/fixtures.js';

const testdata = (p: string) => join(REPO_ROOT, 'testdata', p);
const dir = tempDir(undefined, 'tarpush-push-');
const cacheEnv = { TARPUSH_CACHE_DIR: join(dir, 'cache'), TARPUSH_STATE_DIR: join(dir, 'state') };

/** The digest of the manifest skopeo reads for `ref` (an index's own digest with raw). */
function skopeoDigest(ref: string, raw = false): string {
  const r = spawnSync('skopeo', ['inspect', '--tls-verify=false', ...(raw ? ['--raw'] : []), `docker://${ref}`]);
  assert.equal(r.status, 0, `skopeo inspect ${ref}: ${r.stderr}`);
  return raw ? `sha256:${createHash('sha256').update(r.stdout).digest('hex')}` : (JSON.parse(r.stdout.toString()).Digest as string);
}

async function tarpush(args: string[], env: Record<string, string | undefined> = {}, input?: string) {
  return runCli(args, { env: { ...cacheEnv, ...env }, ...(input !== undefined ? { input } : {}) });
}

const layerA = await layerTar({ 'etc/a': 'alpha\n' });
const layerB = await layerTar({ 'usr/bin/b': 'beta'.repeat(1000) });
const layerC = await layerTar({ 'opt/c': 'gamma\n' });
const legacyPath = join(dir, 'legacy.tar');
writeFileSync(legacyPath, await dockerSave([{ tags: ['example.com/team/app:1.4'], layers: [layerA, layerB] }]));
const bundlePath = join(dir, 'bundle.tar');
writeFileSync(
  bundlePath,
  await dockerSave([
    { tags: ['docker.io/library/alpine:3.19'], layers: [layerA, layerB] },
    { tags: ['example.com/tools/kit:2'], layers: [layerA, layerC] },
  ]),
);

describe('push to a plain HTTP registry', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(() => reg.stop());

  test('a legacy docker save: the digest printed offline is the registry digest; skopeo agrees', async () => {
    const offline = await tarpush(['digest', legacyPath]);
    assert.equal(offline.code, 0, offline.stderr);
    const digestFile = join(dir, 'digests.txt');
    const r = await tarpush(['push', legacyPath, `${reg.host}/team/app:1.4`, '--digest-file', digestFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${reg.host}/team/app:1.4@${offline.stdout.trim()}\n`, 'stdout carries only the result');
    assert.equal(skopeoDigest(`${reg.host}/team/app:1.4`), offline.stdout.trim());
    assert.equal(readFileSync(digestFile, 'utf8'), `${offline.stdout.trim()} ${reg.host}/team/app:1.4\n`);
    assert.match(r.stderr, /pushed/, 'progress goes to stderr');
    // skopeo can copy what we pushed (a valid image, every blob readable).
    const copy = spawnSync('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/team/app:1.4`, `oci:${join(dir, 'skopeo-copy')}:x`], { encoding: 'utf8' });
    assert.equal(copy.status, 0, copy.stderr);
  });

  test('a re-push sends no blob, and --json reports it', async () => {
    const r = await tarpush(['push', legacyPath, `${reg.host}/team/app:1.4`, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const [report] = JSON.parse(r.stdout);
    assert.equal(report.blobsSent, 0);
    assert.equal(report.blobsSkipped, 3);
  });

  test('no layer is compressed twice in a run, and none when the cache knows it and the registry has it', async () => {
    const env = { TARPUSH_CACHE_DIR: join(dir, 'cache-compress-count') };
    const count = (stderr: string, what: RegExp) => stderr.split('\n').filter((l) => /compressing layer/.test(l) && what.test(l)).length;
    const cold = await tarpush(['push', legacyPath, `${reg.host}/count/a:1`, '--debug'], env);
    assert.equal(cold.code, 0, cold.stderr);
    assert.equal(count(cold.stderr, /to learn its digest \(kept for upload\)/), 2, 'each of the two layers compressed once, kept for the upload');
    assert.equal(count(cold.stderr, /while sending/), 0);
    const again = await tarpush(['push', legacyPath, `${reg.host}/count/a:1`, '--debug'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(count(again.stderr, /./), 0, 'cache knows the digests and the registry has the blobs: no compression');
    const elsewhere = await tarpush(['push', legacyPath, `${reg.host}/count/b:1`, '--debug'], env);
    assert.equal(elsewhere.code, 0, elsewhere.stderr);
    assert.equal(count(elsewhere.stderr, /to learn its digest/), 0, 'digests come from the cache');
    assert.equal(count(elsewhere.stderr, /while sending/), 2, 'compressed once each, while uploading');
    assert.equal(elsewhere.stdout.replace(/.*@/, ''), cold.stdout.replace(/.*@/, ''));
  });

  test('OCI layouts and multi-platform indexes keep their digest', async () => {
    const idx = await tarpush(['push', testdata('stereoscope/pkg/image/oci/testdata/multiplatform_oci_dir'), `${reg.host}/multi/app:latest`]);
    assert.equal(idx.code, 0, idx.stderr);
    assert.equal(idx.stdout.trim(), `${reg.host}/multi/app:latest@sha256:a1a8d08faa5fe3d2ccc0ba54874e39dede9a17120f883c5cb56f2fd9309067c8`);
    assert.equal(skopeoDigest(`${reg.host}/multi/app:latest`, true), 'sha256:a1a8d08faa5fe3d2ccc0ba54874e39dede9a17120f883c5cb56f2fd9309067c8');
    const oci = await tarpush(['push', testdata('dive/.data/test-oci-zstd-image.tar'), `${reg.host}/zstd/app:1`]);
    assert.equal(oci.code, 0, oci.stderr);
    assert.match(oci.stdout, /@sha256:f5e3515f39a16543547c03d03ec34faf9276742e6ce7c7dd6e467a14e90b29fc\n$/);
  });

  test('--all pushes every image under DEST/<repository>:<tag>, shared blobs once', async () => {
    const r = await tarpush(['push', bundlePath, `${reg.host}/mirror`, '--all', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Array<{ dest: string; blobsSent: number; blobsMounted: number }>;
    assert.deepEqual(report.map((p) => p.dest.replace(/@.*/, '')), [`${reg.host}/mirror/library/alpine:3.19`, `${reg.host}/mirror/tools/kit:2`]);
    // The second image shares layerA: it is mounted or skipped, never uploaded again.
    assert.equal(report[0]!.blobsSent, 3);
    assert.equal(report[1]!.blobsSent, 2, 'its own config and layer');
    assert.equal(report[1]!.blobsMounted, 1, 'the shared layer is mounted from the first repository');
    for (const p of report) assert.equal(skopeoDigest(p.dest.replace(/@.*/, '')), p.dest.replace(/.*@/, ''));
  });

  test('a push to an OCI layout (oci:DIR:TAG) gives the same digest as to the registry', async () => {
    const layout = join(dir, 'pushed-layout');
    const r = await tarpush(['push', legacyPath, `oci:${layout}:1.4`]);
    assert.equal(r.code, 0, r.stderr);
    const again = await tarpush(['digest', layout, '--image', '1.4']);
    assert.equal(again.stdout.trim(), r.stdout.trim().replace(/.*@/, ''));
  });

  test('bad destinations and an unreachable registry', async () => {
    const bad = await tarpush(['push', legacyPath, 'Not A/Ref!']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /^tarpush: invalid reference/);
    const down = await tarpush(['push', legacyPath, '127.0.0.1:9/x/y:1']);
    assert.equal(down.code, 4, down.stderr);
    assert.match(down.stderr, /127\.0\.0\.1:9/);
    assert.equal(down.stderr.trim().split('\n').filter((l) => l.startsWith('tarpush:')).length, 1);
  });
});

describe('push over TLS with a custom CA', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ tls: true });
  });
  after(() => reg.stop());

  test('--ca-file works; without it the error suggests --ca-file or --insecure', async () => {
    const host = reg.host.replace('127.0.0.1', 'localhost');
    const ok = await tarpush(['push', legacyPath, `${host}/tls/app:1`, '--ca-file', reg.caFile!]);
    assert.equal(ok.code, 0, ok.stderr);
    const insecure = await tarpush(['push', legacyPath, `${host}/tls/app:2`, '--insecure']);
    assert.equal(insecure.code, 0, insecure.stderr);
    // Loopback falls back to HTTP only when the other side does not speak TLS; an unknown CA is
    // a TLS failure, reported as one.
    const bad = await tarpush(['push', legacyPath, `${reg.host}/tls/app:3`]);
    assert.equal(bad.code, 4, bad.stderr);
    assert.match(bad.stderr, /--ca-file/);
    assert.match(bad.stderr, /--insecure/);
  });
});

describe('push with basic auth', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'basic', users: { ci: 'S3cret-pa55' } });
  });
  after(() => reg.stop());

  test('-u with --password-stdin; the password never appears, not even with --debug', async () => {
    const r = await tarpush(['push', legacyPath, `${reg.host}/auth/app:1`, '-u', 'ci', '--password-stdin', '--debug'], {}, 'S3cret-pa55\n');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stderr.includes('S3cret-pa55') && !r.stdout.includes('S3cret-pa55'));
    assert.ok(!r.stderr.includes(dockerAuth('ci', 'S3cret-pa55')), 'no Basic header value in the debug log');
  });

  test('a wrong password is an auth error naming the registry', async () => {
    const r = await tarpush(['push', legacyPath, `${reg.host}/auth/app:1`, '-u', 'ci', '--password-stdin'], {}, 'wrong-one\n');
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, new RegExp(reg.host.replace(/\./g, '\\.')));
    assert.ok(!r.stderr.includes('wrong-one'));
  });

  test('credentials from DOCKER_CONFIG and from a credential helper', async () => {
    const cfg = await writeDockerConfig(join(dir, 'docker-config'), { auths: { [reg.host]: { auth: dockerAuth('ci', 'S3cret-pa55') } } });
    const viaConfig = await tarpush(['push', legacyPath, `${reg.host}/auth/app:2`], { DOCKER_CONFIG: cfg });
    assert.equal(viaConfig.code, 0, viaConfig.stderr);
    const bin = await installCredHelper(join(dir, 'helper'), 'testhelper', { [reg.host]: { Username: 'ci', Secret: 'S3cret-pa55' } });
    const cfg2 = await writeDockerConfig(join(dir, 'docker-config-2'), { credHelpers: { [reg.host]: 'testhelper' } });
    const viaHelper = await tarpush(['push', legacyPath, `${reg.host}/auth/app:3`], { DOCKER_CONFIG: cfg2, PATH: pathWith(bin) });
    assert.equal(viaHelper.code, 0, viaHelper.stderr);
    const anonymous = await tarpush(['push', legacyPath, `${reg.host}/auth/app:4`]);
    assert.equal(anonymous.code, 5, anonymous.stderr);
  });
});

describe('push with token auth', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({
      auth: 'token',
      users: { ci: 'tok-pass', reader: 'read-only' },
      tokenAccess: (user, scope) => (user === 'ci' ? ['pull', 'push'] : user === 'reader' && scope.startsWith('repository:') ? ['pull'] : []),
    });
  });
  after(() => reg.stop());

  test('bearer tokens from the token server; a pull-only user is denied with an auth error', async () => {
    const ok = await tarpush(['push', legacyPath, `${reg.host}/tok/app:1`, '-u', 'ci', '--password-stdin', '--debug'], {}, 'tok-pass');
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(!ok.stderr.includes('tok-pass'));
    assert.doesNotMatch(ok.stderr, /eyJ[A-Za-z0-9_-]{10,}\./, 'no JWT in the debug log');
    const denied = await tarpush(['push', legacyPath, `${reg.host}/tok/app:2`, '-u', 'reader', '--password-stdin'], {}, 'read-only');
    assert.equal(denied.code, 5, denied.stderr);
  });
});

describe('push through faults', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  before(async () => {
    reg = await startRegistry();
    proxy = await startProxy({ url: reg.url });
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
  });

  test('500 and 429 with Retry-After are retried (visible with --debug)', async () => {
    proxy.addRule({ method: 'HEAD', path: /\/blobs\//, times: 1, action: { kind: 'status', status: 500 } });
    proxy.addRule({ method: 'PUT', path: /\/manifests\//, times: 1, action: { kind: 'status', status: 429, retryAfter: 1 } });
    const r = await tarpush(['push', legacyPath, `${proxy.host}/faults/app:1`, '--debug']);
    proxy.clearRules();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /retry/i);
  });

  const bigDigest = async (path: string) => (await tarpush(['digest', path, '--compression', 'none'])).stdout.trim();
  let bigPath = '';
  before(async () => {
    const big = await sizedLayer(randomBytes(8).toString('hex'), 24 * 1024 * 1024);
    bigPath = join(dir, 'big.tar');
    writeFileSync(bigPath, await dockerSave([{ tags: ['big:1'], layers: [big] }]));
  });
  // --compression none keeps the layer as it is, so bytes on the wire equal the layer size.
  const bigArgs = (dest: string) => ['push', bigPath, dest, '--compression', 'none', '--chunk-size', '1MiB', '-q'];
  const LAYER = 24 * 1024 * 1024;

  async function rerunSends(dest: string): Promise<number> {
    proxy.resetCounters();
    const r = await tarpush(bigArgs(dest));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${dest}@${await bigDigest(bigPath)}`);
    return proxy.stats({ method: ['PATCH', 'PUT'] }).requestBytes;
  }

  test('a push killed between chunks (SIGKILL), run again, continues where the registry stopped', async () => {
    const dest = `${proxy.host}/resume/kill:1`;
    proxy.resetCounters();
    // Ten chunks reach the registry; the eleventh is held in flight when the process dies.
    proxy.addRule({ method: 'PATCH', times: 10, action: { kind: 'pass' } });
    proxy.addRule({ method: 'PATCH', action: { kind: 'hold' } });
    const child = spawn(process.execPath, [TARPUSH_BIN, ...bigArgs(dest)], { env: { ...process.env, ...cacheEnv }, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await proxy.waitFor({ method: 'PATCH', fault: 'hold' }, 60_000);
    child.kill('SIGKILL');
    await exited;
    proxy.clearRules();
    const firstRun = proxy.stats({ method: 'PATCH' }).requestBytes;
    assert.ok(firstRun >= 10 * 1024 * 1024, `first run sent ${firstRun} bytes`);
    const secondRun = await rerunSends(dest);
    assert.ok(secondRun <= LAYER - 9 * 1024 * 1024, `rerun sent ${secondRun} bytes of ${LAYER}; the first run had sent ${firstRun}`);
  });

  test('Ctrl-C finishes the chunks in flight and exits 130; the rerun resumes', async () => {
    const dest = `${proxy.host}/resume/ctrlc:1`;
    proxy.resetCounters();
    proxy.addRule({ method: 'PATCH', action: { kind: 'delay', ms: 50 } });
    const child = spawn(process.execPath, [TARPUSH_BIN, ...bigArgs(dest)], { env: { ...process.env, ...cacheEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (proxy.stats({ method: 'PATCH' }).requestBytes < 8 * 1024 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.match(stderr, /interrupted; run the same command again to resume/);
    proxy.clearRules();
    const firstRun = proxy.stats({ method: 'PATCH' }).requestBytes;
    assert.ok(firstRun < LAYER, `the first run stopped early (sent ${firstRun})`);
    const secondRun = await rerunSends(dest);
    assert.ok(secondRun <= LAYER - firstRun + 1024 * 1024, `rerun sent ${secondRun} bytes; the first run had sent ${firstRun} of ${LAYER}`);
  });
});
