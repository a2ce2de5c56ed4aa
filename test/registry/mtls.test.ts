import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { TarpushError } from '../../src/errors.js';
import { openRegistry, parseReference, RegistryTarget } from '../../src/registry/index.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { freePort } from '../helpers/ports.js';
import { REGISTRY_BINARY } from '../helpers/registry.js';
import { makeImage, pushGraph, tempDir } from './fixtures.js';

// The shared harness has no client-certificate mode, so this file runs the real registry itself
// with `http.tls.clientcas` set.
const run = promisify(execFile);
let dir: { path: string; remove(): Promise<void> };
let pki: TestPki;
let child: ChildProcess | undefined;
let host: string;
let clientCert: string;
let clientKey: string;

before(async () => {
  dir = await tempDir('tarpush-mtls-');
  pki = await makeTestPki(dir.path);
  clientKey = join(dir.path, 'client.key');
  clientCert = join(dir.path, 'client.pem');
  const csr = join(dir.path, 'client.csr');
  const ext = join(dir.path, 'client.ext');
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', clientKey, '-out', csr, '-subj', '/CN=tarpush client']);
  await writeFile(ext, 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', pki.caFile, '-CAkey', join(dir.path, 'ca.key'), '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', clientCert]);
  const port = await freePort();
  host = `127.0.0.1:${port}`;
  const config = join(dir.path, 'config.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir.path, 'storage')}`,
      'http:',
      `  addr: ${host}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
      '  tls:',
      `    certificate: ${pki.certFile}`,
      `    key: ${pki.keyFile}`,
      '    clientcas:',
      `      - ${pki.caFile}`,
      '',
    ].join('\n'),
  );
  child = spawn(REGISTRY_BINARY, ['serve', config], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: 'ignore' });
  const { readFileSync } = await import('node:fs');
  const cert = readFileSync(clientCert);
  const key = readFileSync(clientKey);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await new Promise<number | undefined>((resolve) => {
      const req = https.get(`https://${host}/v2/`, { ca: pki.caPem, cert, key, agent: false, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', () => resolve(undefined));
    });
    if (status === 200) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('mTLS registry did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await dir?.remove();
});

test('mutual TLS: pushes with --cert/--key', async () => {
  const img = makeImage([5000]);
  const target = new RegistryTarget(
    openRegistry(parseReference(`${host}/mtls/app`), { caFile: pki.caFile, certFile: clientCert, keyFile: clientKey, stateDir: join(dir.path, 'state'), access: 'push' }),
  );
  try {
    await pushGraph(img.root, target, 'v');
    assert.equal(await target.remoteDigest('v'), img.manifestDesc.digest);
  } finally {
    await target.close();
  }
});

test('mutual TLS: without a client certificate the registry is unreachable, with a network error', async () => {
  const client = openRegistry(parseReference(`${host}/mtls/app`), { caFile: pki.caFile, maxAttempts: 2, retryBaseMs: 10 });
  try {
    await assert.rejects(client.headManifest('v'), (e: unknown) => {
      assert.ok(e instanceof TarpushError, String(e));
      assert.equal(e.kind, 'network');
      assert.match(e.message, /127\.0\.0\.1:\d+/);
      return true;
    });
  } finally {
    await client.close();
  }
});
