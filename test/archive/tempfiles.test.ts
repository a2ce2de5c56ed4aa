import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createTempPath, forgetTemp, pendingTemps, releaseTemp } from '../../src/archive/tempfiles.js';
import { listDir, removeDir, tempDir, TESTDATA } from './fixtures.js';

const TEMPFILES_JS = new URL('../../src/archive/tempfiles.js', import.meta.url).pathname;
const OPEN_JS = new URL('../../src/archive/open.js', import.meta.url).pathname;

let dir: string;
before(() => {
  dir = tempDir('tarpush-tempfiles-');
});
after(() => removeDir(dir));

function freshDir(name: string): string {
  const d = join(dir, name);
  mkdirSync(d);
  return d;
}

const outputs = new WeakMap<ChildProcess, () => string>();
function stdoutOf(proc: ChildProcess): string {
  return outputs.get(proc)?.() ?? '';
}

/** Runs an ESM snippet in a child; `ready` resolves when it prints "ready". */
function child(script: string, args: string[] = []): { proc: ChildProcess; ready: Promise<void>; exit: Promise<{ code: number | null; stderr: string }> } {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  proc.stdout!.on('data', (c: Buffer) => {
    stdout += c.toString();
    if (stdout.includes('ready')) onReady();
  });
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exit = new Promise<{ code: number | null; stderr: string }>((resolve) => proc.on('close', (code) => resolve({ code, stderr })));
  outputs.set(proc, () => stdout);
  return { proc, ready, exit };
}

/** A child that registers a temp file and a temp directory in `d`, then runs `then`. */
function holder(d: string, then: string): string {
  return `
    import { writeFileSync, mkdirSync } from 'node:fs';
    import { createTempPath } from ${JSON.stringify(TEMPFILES_JS)};
    const file = createTempPath(${JSON.stringify(d)}, 'file-');
    writeFileSync(file, 'partial');
    const sub = createTempPath(${JSON.stringify(d)}, 'dir-');
    mkdirSync(sub);
    writeFileSync(sub + '/inner', 'x');
    process.stdout.write('ready');
    ${then}
  `;
}

describe('tempfiles', () => {
  it('creates unique registered paths and releases them (files and directories)', async () => {
    const d = freshDir('release');
    const a = createTempPath(d, 'x-');
    const b = createTempPath(d, 'x-');
    assert.notEqual(a, b);
    assert.ok(a.startsWith(join(d, 'x-')));
    assert.equal(existsSync(a), false, 'createTempPath only reserves the name');
    assert.ok(pendingTemps().includes(a));
    writeFileSync(a, 'data');
    mkdirSync(b);
    writeFileSync(join(b, 'inner'), 'data');
    await releaseTemp(a);
    await releaseTemp(b);
    await releaseTemp(b); // idempotent, absent is fine
    assert.deepEqual(listDir(d), []);
    assert.equal(pendingTemps().includes(a), false);
    const kept = createTempPath(d, 'kept-');
    writeFileSync(kept, 'renamed into place');
    forgetTemp(kept);
    assert.equal(pendingTemps().includes(kept), false);
    assert.ok(existsSync(kept));
  });

  it('removes temps on normal exit', async () => {
    const d = freshDir('exit');
    const { exit } = child(holder(d, ''));
    assert.equal((await exit).code, 0);
    assert.deepEqual(listDir(d), []);
  });

  it('removes temps on an uncaught error', async () => {
    const d = freshDir('crash');
    const { exit } = child(holder(d, `setTimeout(() => { throw new Error('boom'); }, 10);`));
    const { code, stderr } = await exit;
    assert.equal(code, 1);
    assert.match(stderr, /boom/);
    assert.deepEqual(listDir(d), []);
  });

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`removes temps on ${signal} and exits ${code}`, async () => {
      const d = freshDir(signal);
      const { proc, ready, exit } = child(holder(d, 'setInterval(() => {}, 1000);'));
      await ready;
      assert.equal(listDir(d).length, 2);
      proc.kill(signal);
      assert.equal((await exit).code, code);
      assert.deepEqual(listDir(d), []);
    });
  }

  it('leaves temps and exiting to another SIGINT listener, cleaning up at its exit', async () => {
    const d = freshDir('own-handler');
    const graceful = `
      import { readdirSync } from 'node:fs';
      process.on('SIGINT', () => setTimeout(() => {
        // In-flight work may still be reading its spool files during a graceful stop.
        process.stdout.write(' temps during grace: ' + readdirSync(${JSON.stringify(d)}).length);
        process.exit(7);
      }, 50));
      setInterval(() => {}, 1000);
    `;
    const { proc, ready, exit } = child(holder(d, graceful));
    await ready;
    proc.kill('SIGINT');
    const { code } = await exit;
    assert.equal(code, 7);
    assert.match(stdoutOf(proc), /temps during grace: 2/);
    assert.deepEqual(listDir(d), []);
  });

  it('removes the decompression spool when Ctrl-C arrives mid-spool', async () => {
    const d = freshDir('spool');
    const script = `
      import { openTree } from ${JSON.stringify(OPEN_JS)};
      await openTree('-', { tmpdir: ${JSON.stringify(d)} });
      process.stdout.write('opened');
    `;
    const { proc, exit } = child(script);
    // A valid gzip stream whose end never comes: the child keeps spooling until interrupted.
    const gz = gzipSync(readFileSync(join(TESTDATA, 'go-containerregistry/pkg/v1/tarball/testdata/test_link.tar')));
    proc.stdin!.write(gz.subarray(0, gz.length - 30));
    const deadline = Date.now() + 10_000;
    while (listDir(d).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(listDir(d).length, 1, 'the spool should exist while spooling');
    proc.kill('SIGINT');
    assert.equal((await exit).code, 130);
    assert.deepEqual(listDir(d), []);
  });
});
