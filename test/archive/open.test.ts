import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { FileTree } from '../../src/archive/filetree.js';
import { openTree, openTreeFromStream } from '../../src/archive/open.js';
import { pendingTemps } from '../../src/archive/tempfiles.js';
import { TarpushError } from '../../src/errors.js';
import { compressWith, listDir, packTar, removeDir, tempDir, TESTDATA } from './fixtures.js';

const TEST_LINK = join(TESTDATA, 'go-containerregistry/pkg/v1/tarball/testdata/test_link.tar');
const TWO_IMAGES_XZ = join(TESTDATA, 'skopeo/systemtest/testdata/docker-two-images.tar.xz');
const OCI_ZSTD_LAYOUT_TAR = join(TESTDATA, 'dive/.data/test-oci-zstd-image.tar');
const OPEN_JS = new URL('../../src/archive/open.js', import.meta.url).pathname;

/** The layer test_link.tar's second image reaches through a symlink (ggcr TestLayerLink). */
const LINKED_LAYER = 'b159278ac0c8813245b6c3b22cbbe7abefe3b2ec3fac6c7e87138811e1ef2a88/layer.tar';
const LINKED_TARGET = '6e77476643c3155b1e9ae07dd5a4c8288bdb6590c131c222b7a3f277dec1e266/layer.tar';
const LINKED_DIFF_ID = '8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17';

let work: string;
let spools: string;
let n = 0;

before(() => {
  work = tempDir();
  spools = tempDir('tarpush-spools-');
});
after(() => {
  removeDir(work);
  removeDir(spools);
});

function file(bytes: Buffer, name = `f${n++}`): string {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
}

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

async function inputFailure(p: Promise<unknown>, message: string | RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TarpushError, `expected a TarpushError, got ${String(e)}`);
    assert.equal(e.kind, 'input');
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

async function withTree<T>(tree: FileTree, fn: (t: FileTree) => Promise<T>): Promise<T> {
  try {
    return await fn(tree);
  } finally {
    await tree.close();
  }
}

/** Every blob of an OCI layout tree hashes to its name. */
async function checkBlobs(tree: FileTree): Promise<number> {
  const blobs = tree.files().filter((f) => f.startsWith('blobs/sha256/'));
  for (const blob of blobs) assert.equal(await sha256Of(tree.open(blob)), blob.slice('blobs/sha256/'.length), blob);
  return blobs.length;
}

describe('openTree on tar files', () => {
  it('indexes a plain docker-save tar in place and reads a symlinked layer (test_link.tar)', async () => {
    await withTree(await openTree(TEST_LINK, { tmpdir: spools }), async (tree) => {
      assert.equal(tree.kind, 'tar');
      assert.equal(tree.compression, 'none');
      assert.equal(tree.where, TEST_LINK);
      assert.equal(listDir(spools).length, 0, 'a plain tar is not spooled');
      assert.ok(tree.has('manifest.json'));
      assert.ok(tree.has(LINKED_LAYER));
      assert.equal(tree.size(LINKED_LAYER), 10240);
      assert.equal(await sha256Of(tree.open(LINKED_LAYER)), LINKED_DIFF_ID);
      assert.equal(await sha256Of(tree.open(LINKED_TARGET)), LINKED_DIFF_ID);
      const manifest = JSON.parse((await tree.read('manifest.json')).toString()) as { Layers: string[] }[];
      assert.ok(manifest.some((m) => m.Layers.includes(LINKED_LAYER)));
      assert.equal(tree.files().length, 13);
    });
  });

  it('spools an xz-compressed docker save with a symlinked layer, and removes the spool on close', async () => {
    const tree = await openTree(TWO_IMAGES_XZ, { tmpdir: spools });
    assert.equal(tree.compression, 'xz');
    assert.equal(listDir(spools).length, 1, 'the decompressed spool exists while open');
    const link = 'ae5358a87748d60c757d7a41e7dffefda59d7b043dd4c0fa522ed37eef8cf7d3/layer.tar';
    const target = '9e716152053e039ca3e6d9bbdfb8c5fe346182f630428ba1b5be31929f167c2d/layer.tar';
    assert.equal(tree.size(link), 1536);
    assert.equal(await sha256Of(tree.open(link)), await sha256Of(tree.open(target)));
    const manifest = JSON.parse((await tree.read('manifest.json')).toString()) as { RepoTags: string[] }[];
    assert.deepEqual(manifest.flatMap((m) => m.RepoTags).sort(), ['example.com/empty/but:different', 'example.com/empty:latest']);
    await tree.close();
    await tree.close();
    assert.deepEqual(listDir(spools), []);
    assert.throws(() => tree.open(link), /closed/);
  });

  it('reads an OCI layout tar (dive test-oci-zstd-image.tar) with every blob matching its digest', async () => {
    await withTree(await openTree(OCI_ZSTD_LAYOUT_TAR), async (tree) => {
      assert.equal(await checkBlobs(tree), 3);
      const index = JSON.parse((await tree.read('index.json')).toString()) as { manifests: { digest: string }[] };
      assert.equal(index.manifests[0]?.digest, 'sha256:f5e3515f39a16543547c03d03ec34faf9276742e6ce7c7dd6e467a14e90b29fc');
    });
  });

  for (const kind of ['gzip', 'zstd', 'xz'] as const) {
    it(`opens a whole-archive ${kind} tar like the plain one`, async () => {
      const plain = readFileSync(OCI_ZSTD_LAYOUT_TAR);
      const path = file(kind === 'gzip' ? gzipSync(plain) : compressWith(kind, plain), `layout.tar.${kind}`);
      await withTree(await openTree(path, { tmpdir: spools }), async (tree) => {
        assert.equal(tree.compression, kind);
        assert.deepEqual(tree.files(), (await openTree(OCI_ZSTD_LAYOUT_TAR)).files());
        assert.equal(await checkBlobs(tree), 3);
      });
      assert.deepEqual(listDir(spools), []);
    });
  }

  it('opens a multi-member gzip tar (as pigz writes)', async () => {
    const plain = readFileSync(TEST_LINK);
    const path = file(Buffer.concat([gzipSync(plain.subarray(0, 7000)), gzipSync(plain.subarray(7000))]), 'multi.tar.gz');
    await withTree(await openTree(path, { tmpdir: spools }), async (tree) => {
      assert.equal(tree.compression, 'gzip');
      assert.equal(await sha256Of(tree.open(LINKED_LAYER)), LINKED_DIFF_ID);
    });
  });

  it('reports truncated gzip naming the file, leaving no temp file behind', async () => {
    const gz = gzipSync(readFileSync(TEST_LINK));
    const path = file(gz.subarray(0, gz.length - 100), 'cut.tar.gz');
    const before = pendingTemps().length;
    await inputFailure(openTree(path, { tmpdir: spools }), `${path}: truncated gzip data`);
    assert.deepEqual(listDir(spools), []);
    assert.equal(pendingTemps().length, before);
  });

  it('reports truncated zstd and xz the same way', async () => {
    const plain = readFileSync(TEST_LINK);
    for (const kind of ['zstd', 'xz'] as const) {
      const c = compressWith(kind, plain);
      const path = file(c.subarray(0, c.length - 20), `cut.tar.${kind}`);
      await inputFailure(openTree(path, { tmpdir: spools }), `${path}: truncated ${kind} data`);
      assert.deepEqual(listDir(spools), []);
    }
  });

  it('reports a tar truncated inside complete compression, naming the user file', async () => {
    const plain = readFileSync(TEST_LINK);
    const path = file(gzipSync(plain.subarray(0, 5000)), 'short-tar.gz');
    await inputFailure(openTree(path, { tmpdir: spools }), /short-tar\.gz: truncated: entry 3fe17a762ab6ad87de78c88326e1667b3e6a8924a0eb92a34a2bfeb40f49824d\/layer\.tar needs \d+ bytes beyond the end of the file$/);
    assert.deepEqual(listDir(spools), []);
  });

  it('says "not a tar" for random bytes, compressed or not', async () => {
    const random = Buffer.alloc(100_000);
    for (let i = 0; i < random.length; i++) random[i] = (i * 7919 + (i >> 8)) & 0xff;
    const plain = file(random, 'random.bin');
    await inputFailure(openTree(plain), `${plain}: not a tar archive or OCI layout directory (no valid tar header at the start)`);
    const gz = file(gzipSync(random), 'random.gz');
    await inputFailure(
      openTree(gz, { tmpdir: spools }),
      `${gz}: not a tar archive or OCI layout directory (gzip-compressed, but the decompressed data is not a tar: no valid tar header at the start)`,
    );
    const empty = file(gzipSync(Buffer.alloc(0)), 'empty.gz');
    await inputFailure(openTree(empty, { tmpdir: spools }), /empty\.gz: not a tar archive or OCI layout directory \(gzip-compressed, but the decompressed data is not a tar/);
    assert.deepEqual(listDir(spools), []);
  });

  it('reports missing, empty and bzip2 files', async () => {
    const missing = join(work, 'does-not-exist.tar');
    await inputFailure(openTree(missing), `${missing}: no such file`);
    const empty = file(Buffer.alloc(0), 'empty.tar');
    await inputFailure(openTree(empty), `${empty}: is empty (0 bytes)`);
    const bz = file(compressWith('bzip2', readFileSync(TEST_LINK)), 'a.tar.bz2');
    await inputFailure(openTree(bz), /a\.tar\.bz2: bzip2-compressed archives are not supported/);
  });

  it('names the temp directory when the spool cannot be created', async () => {
    const gz = file(gzipSync(readFileSync(TEST_LINK)), 'fine.tar.gz');
    const nowhere = join(work, 'no-such-dir');
    await inputFailure(
      openTree(gz, { tmpdir: nowhere }),
      `${gz}: cannot spool the decompressed archive to ${nowhere}: no such directory (choose another temp directory)`,
    );
  });

  it('reads a FIFO once, like stdin', async () => {
    const fifo = join(work, 'pipe.tar.xz');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const writer = createWriteStream(fifo);
    writer.end(readFileSync(TWO_IMAGES_XZ));
    await withTree(await openTree(fifo, { tmpdir: spools }), async (tree) => {
      assert.equal(tree.compression, 'xz');
      assert.equal(tree.where, fifo);
      assert.equal(tree.files().length, 10);
    });
    assert.deepEqual(listDir(spools), []);
  });

  it('refuses archives with unsafe names', async () => {
    const path = file(await packTar([{ name: 'manifest.json', data: '[]' }, { name: '../evil', data: 'x' }]));
    await inputFailure(openTree(path), `${path}: unsafe entry name ../evil (path traversal)`);
    const gz = file(gzipSync(await packTar([{ name: '/etc/passwd', data: 'root' }])));
    await inputFailure(openTree(gz, { tmpdir: spools }), `${gz}: unsafe entry name /etc/passwd (absolute path)`);
    assert.deepEqual(listDir(spools), []);
  });

  it('reads byte ranges and small files, and refuses big ones', async () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 256));
    const path = file(
      await packTar([
        { name: 'data.bin', data },
        { name: 'alias', type: 'symlink', linkname: 'data.bin' },
        { name: 'gone', type: 'symlink', linkname: 'nowhere' },
        { name: 'empty', data: '' },
      ]),
    );
    await withTree(await openTree(path), async (tree) => {
      const range = async (start: number, end: number): Promise<Buffer> => {
        const chunks: Buffer[] = [];
        for await (const c of tree.open('alias', { start, end })) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      };
      assert.deepEqual(await range(0, 10_000), data);
      assert.deepEqual(await range(100, 612), data.subarray(100, 612));
      assert.deepEqual(await range(9_999, 10_000), data.subarray(9_999));
      assert.deepEqual(await range(500, 500), Buffer.alloc(0));
      assert.throws(() => tree.open('data.bin', { start: 0, end: 10_001 }), /invalid range/);
      assert.throws(() => tree.open('data.bin', { start: 5, end: 4 }), /invalid range/);
      assert.deepEqual(await tree.read('data.bin'), data);
      assert.deepEqual(await tree.read('empty'), Buffer.alloc(0));
      await inputFailure(tree.read('data.bin', 9_999), `${path}: data.bin is 10000 bytes, more than the 9999 bytes tarpush reads into memory`);
      assert.throws(() => tree.open('missing.json'), { message: `${path}: missing.json: no such file in the archive` });
      assert.throws(() => tree.open('gone'), { message: `${path}: gone: link target nowhere does not exist in the archive` });
      assert.equal(tree.has('gone'), false);
      assert.equal(tree.size('gone'), undefined);
      assert.deepEqual(tree.files(), ['data.bin', 'alias', 'empty']);
    });
  });

  it('turns read failures into one-line errors naming archive and entry', async () => {
    const path = file(await packTar([{ name: 'layer.tar', data: 'bytes' }]));
    await withTree(await openTree(path), async (tree) => {
      rmSync(path);
      await inputFailure(text(tree.open('layer.tar')), `${path}: layer.tar: read failed (ENOENT)`);
      await inputFailure(tree.read('layer.tar'), `${path}: layer.tar: read failed (ENOENT)`);
    });
  });
});

describe('openTreeFromStream and stdin', () => {
  it('spools a plain tar from a stream', async () => {
    const plain = readFileSync(TEST_LINK);
    const chunks = [plain.subarray(0, 3), plain.subarray(3, 4000), plain.subarray(4000)];
    const tree = await openTreeFromStream(Readable.from(chunks), '-', { tmpdir: spools });
    assert.equal(tree.compression, 'none');
    assert.equal(tree.where, '-');
    assert.equal(listDir(spools).length, 1);
    assert.equal(await sha256Of(tree.open(LINKED_LAYER)), LINKED_DIFF_ID);
    await tree.close();
    assert.deepEqual(listDir(spools), []);
  });

  it('sniffs compression from a stream delivered a byte at a time', async () => {
    const gz = gzipSync(readFileSync(TEST_LINK));
    const bytes = (function* () {
      for (let i = 0; i < 20; i++) yield gz.subarray(i, i + 1);
      yield gz.subarray(20);
    })();
    await withTree(await openTreeFromStream(Readable.from(bytes), '-', { tmpdir: spools }), async (tree) => {
      assert.equal(tree.compression, 'gzip');
      assert.equal(await sha256Of(tree.open(LINKED_LAYER)), LINKED_DIFF_ID);
    });
  });

  it('reports empty and truncated streams, leaving nothing behind', async () => {
    await inputFailure(openTreeFromStream(Readable.from([]), '-', { tmpdir: spools }), '-: is empty (0 bytes)');
    const gz = gzipSync(readFileSync(TEST_LINK));
    await inputFailure(openTreeFromStream(Readable.from([gz.subarray(0, gz.length - 50)]), '-', { tmpdir: spools }), '-: truncated gzip data');
    const failing = new Readable({
      read() {
        this.push(readFileSync(TEST_LINK).subarray(0, 4096));
        this.destroy(Object.assign(new Error('boom'), { code: 'EIO' }));
      },
    });
    await inputFailure(openTreeFromStream(failing, '-', { tmpdir: spools }), '-: cannot read it (EIO)');
    assert.deepEqual(listDir(spools), []);
  });

  it('reads `-` from the real standard input of a child process', async () => {
    const script = `
      import { openTree } from ${JSON.stringify(OPEN_JS)};
      const tree = await openTree('-', { tmpdir: process.argv[1] });
      const info = { compression: tree.compression, files: tree.files().length, size: tree.size(${JSON.stringify(
        'ae5358a87748d60c757d7a41e7dffefda59d7b043dd4c0fa522ed37eef8cf7d3/layer.tar',
      )}) };
      await tree.close();
      process.stdout.write(JSON.stringify(info));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, spools], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end(readFileSync(TWO_IMAGES_XZ));
    const [out, err, code] = await Promise.all([text(child.stdout), text(child.stderr), new Promise((r) => child.on('close', r))]);
    assert.equal(code, 0, err);
    assert.deepEqual(JSON.parse(out), { compression: 'xz', files: 10, size: 1536 });
    assert.deepEqual(listDir(spools), []);
  });
});

describe('openTree on directories', () => {
  it('serves an OCI layout directory with the same view as its tar', async () => {
    const root = join(work, 'layout');
    const tar = await openTree(OCI_ZSTD_LAYOUT_TAR);
    for (const name of tar.files()) {
      mkdirSync(join(root, name, '..'), { recursive: true });
      writeFileSync(join(root, name), await tar.read(name));
    }
    await withTree(await openTree(root), async (tree) => {
      assert.equal(tree.kind, 'directory');
      assert.equal(tree.compression, 'none');
      assert.deepEqual(tree.files().sort(), tar.files().sort());
      assert.equal(await checkBlobs(tree), 3);
      const blob = tree.files()[0]!;
      assert.equal(tree.size(blob), tar.size(blob));
      const part = await text(tree.open('index.json', { start: 2, end: 15 }));
      assert.equal(part, (await tar.read('index.json')).subarray(2, 15).toString());
    });
    await tar.close();
  });

  it('follows symlinks inside the directory, refuses ones leading out, and survives cycles', async () => {
    const root = join(work, 'links');
    mkdirSync(join(root, 'blobs/sha256'), { recursive: true });
    mkdirSync(join(work, 'outside'), { recursive: true });
    writeFileSync(join(work, 'outside', 'secret'), 'secret');
    writeFileSync(join(root, 'blobs/sha256/real'), 'real bytes');
    symlinkSync('real', join(root, 'blobs/sha256/alias'));
    symlinkSync('blobs', join(root, 'blobs-link'));
    symlinkSync('../outside/secret', join(root, 'escape'));
    symlinkSync('/etc/passwd', join(root, 'absolute'));
    symlinkSync('nothing-here', join(root, 'dangling'));
    symlinkSync('.', join(root, 'loop'));
    await withTree(await openTree(root), async (tree) => {
      assert.deepEqual(tree.files(), ['blobs/sha256/alias', 'blobs/sha256/real', 'blobs-link/sha256/alias', 'blobs-link/sha256/real']);
      assert.equal(await text(tree.open('blobs-link/sha256/alias')), 'real bytes');
      assert.equal((await tree.read('./blobs/sha256/real')).toString(), 'real bytes');
      assert.equal(tree.has('escape'), false);
      assert.equal(tree.has('blobs/../escape'), false);
      assert.equal(tree.has('../outside/secret'), false);
      assert.throws(() => tree.open('escape'), { message: `${root}: escape is a symlink pointing outside the directory` });
      assert.throws(() => tree.open('absolute'), /absolute is a symlink pointing outside the directory/);
      assert.throws(() => tree.open('dangling'), /dangling is a symlink to something that does not exist/);
      assert.throws(() => tree.open('nope.json'), { message: `${root}: nope.json: no such file in the directory` });
    });
  });
});
