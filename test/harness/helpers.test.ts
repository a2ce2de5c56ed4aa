import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT, TARPUSH_BIN, runNodeScript } from '../helpers/cli.js';
import {
  credHelperCalls, credHelperStore, dockerAuth, installCredHelper, pathWith, writeDockerConfig,
} from '../helpers/credhelper.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);

describe('credential helper', () => {
  it('answers get for known servers and "not found" with exit 1 otherwise', async (t) => {
    const dir = tempDir(t);
    const entry = await installCredHelper(dir, 'tptest', {
      '127.0.0.1:5000': { Username: 'alice', Secret: 's3cret' },
      'https://index.docker.io/v1/': { Username: '<token>', Secret: 'identity-token' },
    });
    const env = { ...process.env, PATH: pathWith(entry) };
    const helper = (action: string, input: string) => new Promise<{ code: number; stdout: string }>((resolve) => {
      const child = execFile('docker-credential-tptest', [action], { env }, (err, stdout) => {
        resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout });
      });
      child.stdin!.end(input);
    });

    const got = await helper('get', '127.0.0.1:5000\n');
    assert.equal(got.code, 0);
    assert.deepEqual(JSON.parse(got.stdout), { ServerURL: '127.0.0.1:5000', Username: 'alice', Secret: 's3cret' });
    const missing = await helper('get', 'elsewhere.example:443');
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout.trim(), 'credentials not found in native keychain');

    assert.equal((await helper('store', JSON.stringify({ ServerURL: 'new:1', Username: 'bob', Secret: 'pw' }))).code, 0);
    assert.deepEqual(JSON.parse((await helper('list', '')).stdout), {
      '127.0.0.1:5000': 'alice', 'https://index.docker.io/v1/': '<token>', 'new:1': 'bob',
    });
    assert.equal((await helper('erase', 'new:1')).code, 0);
    assert.equal((await credHelperStore(dir, 'tptest'))['new:1'], undefined);

    const calls = await credHelperCalls(dir, 'tptest');
    assert.deepEqual(calls.map((c) => c.action), ['get', 'get', 'store', 'list', 'erase']);
    assert.equal(calls[0]!.serverURL, '127.0.0.1:5000');
    // The call log is for assertions in tests; it must never hold a secret.
    assert.ok(!readFileSync(path.join(entry, 'docker-credential-tptest.calls.jsonl'), 'utf8').includes('s3cret'));
  });

  it('writes a DOCKER_CONFIG directory', async (t) => {
    const dir = await writeDockerConfig(path.join(tempDir(t), 'docker'), {
      auths: { '127.0.0.1:5000': { auth: dockerAuth('alice', 's3cret') } },
      credHelpers: { 'other:1': 'tptest' },
    });
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(Buffer.from(config.auths['127.0.0.1:5000']!.auth, 'base64').toString(), 'alice:s3cret');
  });
});

describe('temp dirs', () => {
  let kept = '';
  it('makes a dir that exists during the test', (t) => {
    kept = tempDir(t);
    assert.ok(existsSync(kept));
  });
  it('removed it when that test ended', () => {
    assert.ok(kept !== '');
    assert.equal(existsSync(kept), false);
  });
});

describe('CLI runner', () => {
  it('resolves the repository root and bin/tarpush from the compiled file', () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string };
    assert.equal(pkg.name, 'tarpush');
    assert.equal(TARPUSH_BIN, path.join(REPO_ROOT, 'bin', 'tarpush'));
  });

  it('passes args and stdin, captures output and exit code, isolates credentials', async (t) => {
    const dir = tempDir(t);
    const script = path.join(dir, 'echo.cjs');
    await writeFile(script, `
      const input = require('node:fs').readFileSync(0, 'utf8');
      process.stdout.write(JSON.stringify({ args: process.argv.slice(2), input, cwd: process.cwd(),
        dockerConfig: process.env.DOCKER_CONFIG ?? null, home: process.env.HOME, extra: process.env.EXTRA }));
      process.stderr.write('progress\\n');
      process.exit(3);
    `);
    const prev = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = '/somewhere/real';
    t.after(() => { if (prev === undefined) delete process.env.DOCKER_CONFIG; else process.env.DOCKER_CONFIG = prev; });
    const res = await runNodeScript(script, ['push', 'a b'], { input: 'piped', cwd: dir, env: { EXTRA: 'x' } });
    assert.equal(res.code, 3);
    assert.equal(res.stderr, 'progress\n');
    const seen = JSON.parse(res.stdout) as Record<string, unknown>;
    assert.deepEqual(seen.args, ['push', 'a b']);
    assert.equal(seen.input, 'piped');
    assert.equal(seen.cwd, dir);
    assert.equal(seen.dockerConfig, null);
    assert.notEqual(seen.home, process.env.HOME);
    assert.equal(seen.extra, 'x');
    assert.equal(existsSync(String(seen.home)), false, 'the per-run HOME is removed afterwards');
  });

  it('kills a hung process and rejects with its stderr', async (t) => {
    const script = path.join(tempDir(t), 'hang.cjs');
    await writeFile(script, `process.stderr.write('stuck here'); setInterval(() => {}, 1000);`);
    await assert.rejects(runNodeScript(script, [], { timeoutMs: 500 }), /timed out after 500 ms[\s\S]*stuck here/);
  });

  it('finds the credential helper through PATH (sanity of the shell wrapper)', async (t) => {
    const dir = tempDir(t);
    const entry = await installCredHelper(dir, 'pathcheck', {});
    const { stdout } = await run('sh', ['-c', 'command -v docker-credential-pathcheck'], { env: { ...process.env, PATH: pathWith(entry) } });
    assert.equal(stdout.trim(), path.join(entry, 'docker-credential-pathcheck'));
  });
});
