import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CompressionCache, defaultCacheDir } from '../../src/compress/cache.js';

const root = mkdtempSync(join(tmpdir(), 'tarpush-cache-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function freshDir(): string {
  return join(root, `c${n++}`);
}

const KEY = 'gzip-pako3.0.3-l1-b1048576';
const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const VALUE = { digest: `sha256:${'c'.repeat(64)}`, size: 12345 };

function entryFile(dir: string, diffId: string, key = KEY): string {
  return join(dir, 'gzip', key, `sha256-${diffId.slice(7)}.json`);
}

describe('compression cache', () => {
  test('miss, then hit after put; other keys still miss', async () => {
    const cache = new CompressionCache({ dir: freshDir() });
    assert.equal(await cache.get(A, KEY), undefined);
    await cache.put(A, KEY, VALUE);
    assert.deepEqual(await cache.get(A, KEY), VALUE);
    assert.equal(await cache.get(B, KEY), undefined);
    assert.equal(await cache.get(A, 'gzip-pako3.0.3-l6-b1048576'), undefined);
    // A second instance (another process) sees the same entry.
    assert.deepEqual(await new CompressionCache({ dir: cache.dir }).get(A, KEY), VALUE);
  });

  test('put overwrites atomically and leaves no temp files', async () => {
    const dir = freshDir();
    const cache = new CompressionCache({ dir });
    await Promise.all([cache.put(A, KEY, VALUE), cache.put(A, KEY, VALUE), cache.put(B, KEY, VALUE)]);
    const names = readdirSync(join(dir, 'gzip', KEY)).sort();
    assert.deepEqual(names, [`sha256-${'a'.repeat(64)}.json`, `sha256-${'b'.repeat(64)}.json`]);
  });

  const corruptions: Array<[string, (text: string) => string]> = [
    ['truncated', (t) => t.slice(0, t.length / 2)],
    ['empty', () => ''],
    ['not JSON', () => '\u0000\u0001garbage'],
    ['size changed without fixing the checksum', (t) => t.replace('12345', '12346')],
    ['digest changed without fixing the checksum', (t) => t.replace('c'.repeat(64), 'd'.repeat(64))],
    ['checksum missing', (t) => JSON.stringify({ ...JSON.parse(t), check: undefined })],
    ['a JSON array', () => '[1,2,3]'],
  ];
  for (const [name, corrupt] of corruptions) {
    test(`a corrupt entry (${name}) is a miss and can be rewritten`, async () => {
      const dir = freshDir();
      const cache = new CompressionCache({ dir });
      await cache.put(A, KEY, VALUE);
      const file = entryFile(dir, A);
      writeFileSync(file, corrupt(readFileSync(file, 'utf8')));
      assert.equal(await cache.get(A, KEY), undefined);
      await cache.put(A, KEY, VALUE);
      assert.deepEqual(await cache.get(A, KEY), VALUE);
    });
  }

  test('an entry stored under the wrong name (another diffId or settings) is a miss', async () => {
    const dir = freshDir();
    const cache = new CompressionCache({ dir });
    await cache.put(A, KEY, VALUE);
    copyFileSync(entryFile(dir, A), entryFile(dir, B));
    assert.equal(await cache.get(B, KEY), undefined);
    const other = 'gzip-pako3.0.3-l6-b1048576';
    mkdirSync(join(dir, 'gzip', other), { recursive: true });
    copyFileSync(entryFile(dir, A), entryFile(dir, A, other));
    assert.equal(await cache.get(A, other), undefined);
    assert.deepEqual(await cache.get(A, KEY), VALUE);
  });

  test('an unwritable cache directory silently means no cache', async () => {
    // A path under a regular file cannot be created, even by root.
    const blocker = join(root, `file${n++}`);
    writeFileSync(blocker, 'x');
    const messages: string[] = [];
    const cache = new CompressionCache({ dir: join(blocker, 'cache'), debug: (m) => messages.push(m) });
    await cache.put(A, KEY, VALUE);
    assert.equal(await cache.get(A, KEY), undefined);
    assert.ok(messages.some((m) => m.includes('not written')), messages.join('\n'));
  });

  test('keys that cannot name a file safely are not used', async () => {
    const dir = freshDir();
    const cache = new CompressionCache({ dir });
    await cache.put('sha256:../../etc', KEY, VALUE);
    await cache.put(A, '../escape', VALUE);
    await cache.put(A, KEY, { digest: 'nope', size: -1 });
    assert.equal(await cache.get(A, '../escape'), undefined);
    assert.equal(await cache.get(A, KEY), undefined);
    assert.deepEqual(readdirSync(root).includes('escape'), false);
  });

  test('disabled mode neither reads nor writes', async () => {
    const dir = freshDir();
    await new CompressionCache({ dir }).put(A, KEY, VALUE);
    const off = new CompressionCache({ dir, disabled: true });
    assert.equal(await off.get(A, KEY), undefined);
    await off.put(B, KEY, VALUE);
    assert.equal(await new CompressionCache({ dir }).get(B, KEY), undefined);
    assert.equal(CompressionCache.disabled().disabled, true);
  });

  test('default directory: TARPUSH_CACHE_DIR, then absolute XDG_CACHE_HOME, then ~/.cache', () => {
    assert.equal(defaultCacheDir({ TARPUSH_CACHE_DIR: '/x/y', XDG_CACHE_HOME: '/z' }), '/x/y');
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: '/z' }), '/z/tarpush');
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: 'relative' }), join(homedir(), '.cache', 'tarpush'));
    assert.equal(defaultCacheDir({}), join(homedir(), '.cache', 'tarpush'));
  });
});
