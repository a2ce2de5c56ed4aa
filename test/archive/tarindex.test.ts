import assert from 'node:assert/strict';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TarpushError } from '../../src/errors.js';
import { NotATarError, indexTarFile, normaliseEntryName, type TarIndex } from '../../src/archive/tarindex.js';
import { END, body, packTar, paxRecord, rawEntry, rawHeader, removeDir, tempDir } from './fixtures.js';

let dir: string;
let n = 0;
before(() => {
  dir = tempDir();
});
after(() => removeDir(dir));

async function indexOf(bytes: Buffer | Buffer[]): Promise<{ index: TarIndex; path: string }> {
  const path = join(dir, `t${n++}.tar`);
  await writeFile(path, Array.isArray(bytes) ? Buffer.concat(bytes) : bytes);
  return { index: await indexTarFile(path, 'my.tar'), path };
}

async function bytesOf(path: string, index: TarIndex, name: string): Promise<string> {
  const e = index.file(name);
  assert.ok(e, `${name} should resolve to a file`);
  const fh = await open(path);
  try {
    const buf = Buffer.alloc(e.size);
    await fh.read(buf, 0, e.size, e.offset);
    return buf.toString();
  } finally {
    await fh.close();
  }
}

async function rejectsWith(bytes: Buffer | Buffer[], message: string | RegExp): Promise<void> {
  await assert.rejects(indexOf(bytes), (e: unknown) => {
    assert.ok(e instanceof TarpushError, `expected a TarpushError, got ${String(e)}`);
    assert.equal(e.kind, 'input');
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

describe('normaliseEntryName', () => {
  it('strips ./ prefixes, collapses // and drops trailing slashes', () => {
    assert.equal(normaliseEntryName('./a/b', 'x'), 'a/b');
    assert.equal(normaliseEntryName('././a//b/', 'x'), 'a/b');
    assert.equal(normaliseEntryName('a/./b', 'x'), 'a/b');
    assert.equal(normaliseEntryName('./', 'x'), '');
  });
  it('refuses traversal and absolute names, naming the entry', () => {
    assert.throws(() => normaliseEntryName('../evil', 'x.tar'), { message: 'x.tar: unsafe entry name ../evil (path traversal)' });
    assert.throws(() => normaliseEntryName('a/../../b', 'x.tar'), /unsafe entry name a\/\.\.\/\.\.\/b \(path traversal\)/);
    assert.throws(() => normaliseEntryName('a/..', 'x.tar'), /path traversal/);
    assert.throws(() => normaliseEntryName('/etc/passwd', 'x.tar'), { message: 'x.tar: unsafe entry name /etc/passwd (absolute path)' });
  });
});

describe('indexTarFile', () => {
  it('indexes files, dirs and offsets of a tar-stream archive', async () => {
    const { index, path } = await indexOf(
      await packTar([
        { name: 'dir', type: 'directory' },
        { name: 'dir/a.txt', data: 'alpha' },
        { name: 'b.txt', data: 'x'.repeat(1000) },
        { name: 'empty', data: '' },
      ]),
    );
    assert.deepEqual(index.files(), ['dir/a.txt', 'b.txt', 'empty']);
    assert.equal(index.entries.get('dir')?.type, 'dir');
    assert.equal(index.file('dir/a.txt')?.offset, 1024);
    assert.equal(index.file('b.txt')?.size, 1000);
    assert.equal(await bytesOf(path, index, 'dir/a.txt'), 'alpha');
    assert.equal(await bytesOf(path, index, 'b.txt'), 'x'.repeat(1000));
    assert.equal(index.file('empty')?.size, 0);
    assert.equal(index.file('dir'), undefined);
    assert.equal(index.file('nope'), undefined);
  });

  it('reads pax long names written by tar-stream', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(150)}.json`;
    const { index, path } = await indexOf(await packTar([{ name: long, data: 'pax!' }, { name: 'short', data: 's' }]));
    assert.deepEqual(index.files(), [long, 'short']);
    assert.equal(await bytesOf(path, index, long), 'pax!');
  });

  it('applies pax path, linkpath and size and ignores global headers', async () => {
    const name = `p/${'n'.repeat(200)}`;
    const pax = paxRecord('path', name) + paxRecord('size', '5') + paxRecord('mtime', '1.5');
    const { index, path } = await indexOf([
      ...rawEntry({ name: 'pax_global_header', type: 'g' }, paxRecord('comment', 'hello')),
      ...rawEntry({ name: 'PaxHeaders/x', type: 'x' }, pax),
      // The ustar size field says 0; the pax size (5) wins.
      rawHeader({ name: 'truncated-name', size: 0 }),
      body('12345'),
      ...rawEntry({ name: 'PaxHeaders/l', type: 'x' }, paxRecord('linkpath', name)),
      rawHeader({ name: 'link', type: '2', linkname: 'short-ignored' }),
      END,
    ]);
    assert.deepEqual(index.files(), [name, 'link']);
    assert.equal(await bytesOf(path, index, name), '12345');
    assert.equal(index.entries.get('link')?.linkname, name);
    assert.equal(await bytesOf(path, index, 'link'), '12345');
    assert.equal(index.entries.has('pax_global_header'), false);
    assert.equal(index.entries.get(name)?.headerOffset, 1024);
  });

  it('reads GNU long names and long link names', async () => {
    const longName = `gnu/${'x'.repeat(300)}`;
    const longTarget = `gnu/${'y'.repeat(250)}`;
    const { index, path } = await indexOf([
      ...rawEntry({ name: '././@LongLink', type: 'L', format: 'gnu' }, `${longTarget}\0`),
      ...rawEntry({ name: 'cut', format: 'gnu' }, 'target'),
      ...rawEntry({ name: '././@LongLink', type: 'L', format: 'gnu' }, `${longName}\0`),
      ...rawEntry({ name: '././@LongLink', type: 'K', format: 'gnu' }, `${longTarget}\0`),
      rawHeader({ name: 'cut2', type: '1', linkname: 'cut3', format: 'gnu' }),
      END,
    ]);
    assert.deepEqual(index.files(), [longTarget, longName]);
    assert.equal(index.entries.get(longName)?.type, 'hardlink');
    assert.equal(await bytesOf(path, index, longName), 'target');
  });

  it('joins the POSIX ustar prefix, but not in GNU headers', async () => {
    const { index } = await indexOf([
      ...rawEntry({ name: 'file', prefix: 'some/prefix' }, 'p'),
      ...rawEntry({ name: 'plain', format: 'gnu' }, 'g'),
      ...rawEntry({ name: 'old', format: 'v7' }, 'v'),
      END,
    ]);
    assert.deepEqual(index.files(), ['some/prefix/file', 'plain', 'old']);
  });

  it('reads base-256 sizes', async () => {
    const { index, path } = await indexOf([...rawEntry({ name: 'b256', base256: true }, 'big-endian'), END]);
    assert.equal(index.file('b256')?.size, 10);
    assert.equal(await bytesOf(path, index, 'b256'), 'big-endian');
  });

  it('skips a 64 GiB entry by offset arithmetic without reading it', async () => {
    const size = 64 * 1024 ** 3;
    const path = join(dir, 'sparse.tar');
    const fh = await open(path, 'w');
    try {
      await fh.write(rawHeader({ name: 'huge.bin', size }), 0, 512, 0);
      const tail = Buffer.concat(rawEntry({ name: 'after.txt' }, 'after'));
      await fh.write(tail, 0, tail.length, 512 + size);
      // The body is a hole: indexing must be instant and must not depend on its bytes.
      await fh.truncate(512 + size + tail.length + 1024);
    } finally {
      await fh.close();
    }
    const started = Date.now();
    const index = await indexTarFile(path, 'sparse.tar');
    assert.ok(Date.now() - started < 2000, 'indexing should not read the 64 GiB body');
    assert.equal(index.file('huge.bin')?.size, size);
    assert.equal(index.file('after.txt')?.offset, 512 + size + 512);
    assert.equal(await bytesOf(path, index, 'after.txt'), 'after');
  });

  it('normalises ./ prefixes and lets the last duplicate win', async () => {
    const { index, path } = await indexOf(
      await packTar([
        { name: './', type: 'directory' },
        { name: './a', data: 'first' },
        { name: './/b//c/', type: 'directory' },
        { name: '././b/c/d', data: 'deep' },
        { name: 'a', data: 'second' },
      ]),
    );
    assert.deepEqual(index.files(), ['b/c/d', 'a']);
    assert.equal(await bytesOf(path, index, 'a'), 'second');
    assert.equal(await bytesOf(path, index, 'b/c/d'), 'deep');
    assert.equal(index.entries.has(''), false);
  });

  it('resolves symlinks relative to the link directory, through .. inside the archive', async () => {
    const { index, path } = await indexOf(
      await packTar([
        { name: '6e77/layer.tar', data: 'LAYER' },
        { name: 'b159/layer.tar', type: 'symlink', linkname: '../6e77/layer.tar' },
        { name: 'chain1', type: 'symlink', linkname: 'chain2' },
        { name: 'chain2', type: 'symlink', linkname: './b159/layer.tar' },
        { name: 'dirlink', type: 'symlink', linkname: '6e77' },
        { name: 'hard', type: 'link', linkname: './6e77/layer.tar' },
        { name: 'hard2', type: 'link', linkname: 'chain1' },
      ]),
    );
    for (const name of ['b159/layer.tar', 'chain1', 'chain2', 'hard', 'hard2', 'dirlink/layer.tar']) {
      assert.equal(await bytesOf(path, index, name), 'LAYER', name);
      assert.equal(index.file(name)?.name, '6e77/layer.tar');
    }
    assert.deepEqual(index.files(), ['6e77/layer.tar', 'b159/layer.tar', 'chain1', 'chain2', 'hard', 'hard2']);
    assert.equal(index.file('dirlink'), undefined);
    assert.equal(index.file('b159/../6e77/layer.tar')?.name, '6e77/layer.tar');
  });

  it('reports dangling, escaping and cyclic links when resolved', async () => {
    const { index } = await indexOf(
      await packTar([
        { name: 'real', data: 'r' },
        { name: 'dangling', type: 'symlink', linkname: 'missing' },
        { name: 'up', type: 'symlink', linkname: '../etc/passwd' },
        { name: 'abs', type: 'symlink', linkname: '/etc/passwd' },
        { name: 'loop1', type: 'symlink', linkname: 'loop2' },
        { name: 'loop2', type: 'symlink', linkname: 'loop1' },
        { name: 'self', type: 'symlink', linkname: 'self' },
        { name: 'hardloop', type: 'link', linkname: 'hardloop' },
        { name: 'harddangling', type: 'link', linkname: 'nothing' },
        { name: 'hardup', type: 'link', linkname: '../real' },
      ]),
    );
    assert.deepEqual(index.files(), ['real']);
    const problem = (name: string): string => {
      const r = index.resolve(name);
      assert.ok('problem' in r, `${name} should not resolve`);
      return r.problem;
    };
    assert.equal(problem('dangling'), 'dangling: link target missing does not exist in the archive');
    assert.match(problem('up'), /points outside the archive/);
    assert.match(problem('abs'), /points outside the archive \(absolute target\)/);
    assert.match(problem('loop1'), /link cycle/);
    assert.match(problem('self'), /link cycle/);
    assert.match(problem('hardloop'), /link cycle/);
    assert.match(problem('harddangling'), /link target nothing does not exist/);
    assert.match(problem('hardup'), /points outside the archive/);
    assert.equal(problem('absent'), 'absent: no such file in the archive');
    assert.equal(problem('../real'), '../real points outside the archive');
  });

  it('refuses entry names that escape the archive', async () => {
    await rejectsWith(await packTar([{ name: 'ok', data: '1' }, { name: '../evil', data: 'x' }]), 'my.tar: unsafe entry name ../evil (path traversal)');
    await rejectsWith([...rawEntry({ name: '/etc/passwd' }, 'root'), END], 'my.tar: unsafe entry name /etc/passwd (absolute path)');
    await rejectsWith([...rawEntry({ name: 'a/../../b' }, 'x'), END], /unsafe entry name a\/\.\.\/\.\.\/b \(path traversal\)/);
    // Messages stay on one line whatever the name contains.
    await rejectsWith(await packTar([{ name: '../evil\nname', data: 'x' }]), 'my.tar: unsafe entry name "../evil\\nname" (path traversal)');
    // Via a pax path too: the long name is what counts.
    await rejectsWith(
      [...rawEntry({ name: 'x', type: 'x' }, paxRecord('path', '../../pax-evil')), ...rawEntry({ name: 'harmless' }, 'x'), END],
      /unsafe entry name \.\.\/\.\.\/pax-evil \(path traversal\)/,
    );
  });

  it('reports a truncated last entry with the missing byte count', async () => {
    const full = await packTar([{ name: 'a', data: 'aaa' }, { name: 'layer.tar', data: Buffer.alloc(5000, 1) }]);
    // Keep the header of layer.tar and 1000 bytes of its 5000.
    await rejectsWith(full.subarray(0, 1024 + 512 + 1000), 'my.tar: truncated: entry layer.tar needs 4000 bytes beyond the end of the file');
    await rejectsWith(full.subarray(0, 1024 + 100), /my\.tar: truncated: tar header at offset 1024 is incomplete/);
  });

  it('accepts a clean end of file without end-of-archive blocks, and missing final padding', async () => {
    const { index } = await indexOf(Buffer.concat(rawEntry({ name: 'a' }, 'abc')));
    assert.deepEqual(index.files(), ['a']);
    const unpadded = await indexOf([rawHeader({ name: 'b', size: 3 }), Buffer.from('abc')]);
    assert.deepEqual(unpadded.index.files(), ['b']);
    const empty = await indexOf(END);
    assert.deepEqual(empty.index.files(), []);
  });

  it('ignores anything after the end-of-archive blocks', async () => {
    const { index } = await indexOf([...rawEntry({ name: 'a' }, 'abc'), END, Buffer.from('trailing garbage')]);
    assert.deepEqual(index.files(), ['a']);
  });

  it('checks header checksums', async () => {
    await assert.rejects(indexOf([...rawEntry({ name: 'a', badChecksum: true }, 'abc'), END]), (e: unknown) => {
      assert.ok(e instanceof NotATarError);
      assert.equal(e.message, 'my.tar: not a tar archive or OCI layout directory (no valid tar header at the start)');
      return true;
    });
    await rejectsWith(
      [...rawEntry({ name: 'a' }, 'abc'), ...rawEntry({ name: 'b', badChecksum: true }, 'def'), END],
      'my.tar: corrupt tar header at offset 1024 (checksum mismatch)',
    );
  });

  it('refuses data after a lone zero block', async () => {
    await rejectsWith([...rawEntry({ name: 'a' }, 'abc'), Buffer.alloc(512), ...rawEntry({ name: 'b' }, 'x')], /corrupt tar header at offset 1536/);
  });

  it('says "not a tar" for random bytes and short files', async () => {
    const random = Buffer.alloc(4096);
    for (let i = 0; i < random.length; i++) random[i] = (i * 7919 + 13) % 251;
    await assert.rejects(indexOf(random), NotATarError);
    await assert.rejects(indexOf(Buffer.from('{"hello": "json"}')), /not a tar archive or OCI layout directory \(too short for a tar header: 17 bytes\)/);
  });

  it('reports a truncated extended header', async () => {
    await rejectsWith(Buffer.concat(rawEntry({ name: 'x', type: 'x' }, paxRecord('path', 'p'))), /truncated: extended header at offset 0 is not followed by an entry/);
    await rejectsWith([rawHeader({ name: 'L', type: 'L', size: 3000, format: 'gnu' }), Buffer.alloc(512, 0x61)], /truncated: extended header at offset 0 needs 2488 bytes beyond the end of the file/);
  });

  it('refuses corrupt pax records', async () => {
    await rejectsWith([...rawEntry({ name: 'x', type: 'x' }, '99 path=short\n'), ...rawEntry({ name: 'a' }, 'a'), END], 'my.tar: corrupt pax header at offset 0');
  });
});
