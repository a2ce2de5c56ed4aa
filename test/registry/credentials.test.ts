import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TarpushError } from '../../src/errors.js';
import { resolveCredentials } from '../../src/registry/credentials.js';

let dir: string;
let bin: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tarpush-creds-'));
  bin = join(dir, 'bin');
  await mkdir(bin);
  // A credential helper following Docker's protocol: server URL on stdin, JSON on stdout.
  await writeHelper(
    'fake',
    `read server
case "$server" in
  helper.example) echo '{"ServerURL":"helper.example","Username":"hu","Secret":"hs"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hub","Secret":"hubsecret"}' ;;
  tok.example) echo '{"ServerURL":"tok.example","Username":"<token>","Secret":"refresh-abc"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac`,
  );
  await writeHelper('broken', 'read server; echo "secret-in-output s3cr3t" >&2; exit 3');
  await writeHelper('slow', 'sleep 5');
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeHelper(name: string, body: string): Promise<void> {
  const file = join(bin, `docker-credential-${name}`);
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
}

async function dockerConfig(config: unknown): Promise<NodeJS.ProcessEnv> {
  const cfg = await mkdtemp(join(dir, 'cfg-'));
  await writeFile(join(cfg, 'config.json'), JSON.stringify(config));
  return { DOCKER_CONFIG: cfg, HOME: join(dir, 'nohome'), PATH: `${bin}:/usr/bin:/bin` };
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

test('explicit username/password wins over everything', async () => {
  const env = await dockerConfig({ auths: { 'r.example': { auth: b64('cfg:cfgpw') } } });
  const c = await resolveCredentials({ registry: 'r.example', username: 'u', password: 'p', env });
  assert.deepEqual(c, { kind: 'basic', username: 'u', password: 'p', source: 'command line' });
});

test('config.json auths by host, by URL form, and Docker Hub legacy key', async () => {
  const env = await dockerConfig({
    auths: {
      'r.example:5000': { auth: b64('alice:pa:ss') },
      'https://other.example/v1/': { auth: b64('bob:pw2') },
      'https://index.docker.io/v1/': { auth: b64('hubuser:hubpw') },
      'id.example': { auth: b64('carol:'), identitytoken: 'idtok' },
    },
  });
  assert.deepEqual(await resolveCredentials({ registry: 'r.example:5000', env }), {
    kind: 'basic', username: 'alice', password: 'pa:ss', source: `${env.DOCKER_CONFIG}/config.json (r.example:5000)`,
  });
  const other = await resolveCredentials({ registry: 'other.example', env });
  assert.equal(other.kind === 'basic' && other.username, 'bob');
  const hub = await resolveCredentials({ registry: 'docker.io', env });
  assert.equal(hub.kind === 'basic' && hub.password, 'hubpw');
  const hub2 = await resolveCredentials({ registry: 'index.docker.io', env });
  assert.equal(hub2.kind === 'basic' && hub2.username, 'hubuser');
  const id = await resolveCredentials({ registry: 'id.example', env });
  assert.equal(id.kind, 'identity');
  assert.equal(id.kind === 'identity' && id.identityToken, 'idtok');
  assert.deepEqual(await resolveCredentials({ registry: 'unknown.example', env }), { kind: 'anonymous' });
  // A different port is a different registry.
  assert.deepEqual(await resolveCredentials({ registry: 'r.example', env }), { kind: 'anonymous' });
});

test('credHelpers and credsStore run docker-credential-NAME', async () => {
  const env = await dockerConfig({
    credHelpers: { 'helper.example': 'fake', 'tok.example': 'fake', 'missing.example': 'fake' },
    credsStore: 'fake',
    auths: { 'inline.example': { auth: b64('in:line') } },
  });
  const h = await resolveCredentials({ registry: 'helper.example', env });
  assert.deepEqual(h, { kind: 'basic', username: 'hu', password: 'hs', source: 'credential helper docker-credential-fake' });
  const t = await resolveCredentials({ registry: 'tok.example', env });
  assert.equal(t.kind === 'identity' && t.identityToken, 'refresh-abc');
  // "credentials not found" from the helper means anonymous, not an error.
  assert.deepEqual(await resolveCredentials({ registry: 'missing.example', env }), { kind: 'anonymous' });
  // Inline auths beat the store; the store is asked for Docker Hub with Docker's key.
  const i = await resolveCredentials({ registry: 'inline.example', env });
  assert.equal(i.kind === 'basic' && i.username, 'in');
  const hub = await resolveCredentials({ registry: 'docker.io', env });
  assert.equal(hub.kind === 'basic' && hub.password, 'hubsecret');
  assert.deepEqual(await resolveCredentials({ registry: 'nothing.example', env }), { kind: 'anonymous' });
});

test('a failing, missing or slow helper is an auth error that names it and hides its output', async () => {
  const env = await dockerConfig({ credHelpers: { 'b.example': 'broken', 'm.example': 'nope', 's.example': 'slow' } });
  await assert.rejects(resolveCredentials({ registry: 'b.example', env }), (e: unknown) => {
    assert.ok(e instanceof TarpushError && e.kind === 'auth');
    assert.match(e.message, /docker-credential-broken .*exit code 3/);
    assert.doesNotMatch(e.message, /s3cr3t/);
    return true;
  });
  await assert.rejects(resolveCredentials({ registry: 'm.example', env }), /docker-credential-nope .*not found on PATH/);
  await assert.rejects(
    resolveCredentials({ registry: 's.example', env, helperTimeoutMs: 300 }),
    /docker-credential-slow .*timed out/,
  );
});

test('podman auth.json via REGISTRY_AUTH_FILE and XDG_RUNTIME_DIR, namespaced keys', async () => {
  const run = await mkdtemp(join(dir, 'run-'));
  await mkdir(join(run, 'containers'));
  await writeFile(
    join(run, 'containers', 'auth.json'),
    JSON.stringify({
      auths: {
        'p.example': { auth: b64('pod:man') },
        'p.example/team': { auth: b64('team:pw') },
        'p.example/team/sub': { auth: b64('sub:pw') },
      },
    }),
  );
  const env: NodeJS.ProcessEnv = { HOME: join(dir, 'nohome'), XDG_RUNTIME_DIR: run, PATH: '/usr/bin:/bin' };
  const user = async (repository: string): Promise<string | undefined> => {
    const c = await resolveCredentials({ registry: 'p.example', repository, env });
    return c.kind === 'basic' ? c.username : undefined;
  };
  assert.equal(await user('other/app'), 'pod');
  assert.equal(await user('team/app'), 'team');
  assert.equal(await user('team/sub/app'), 'sub');
  assert.equal(await user('teamx/app'), 'pod');

  const authFile = join(dir, 'explicit-auth.json');
  await writeFile(authFile, JSON.stringify({ auths: { 'q.example': { auth: b64('q:q') } } }));
  const env2 = { ...env, REGISTRY_AUTH_FILE: authFile };
  const q = await resolveCredentials({ registry: 'q.example', env: env2 });
  assert.equal(q.kind === 'basic' && q.username, 'q');
  // REGISTRY_AUTH_FILE replaces the default podman locations.
  assert.deepEqual(await resolveCredentials({ registry: 'p.example', env: env2 }), { kind: 'anonymous' });

  // Docker's config comes first.
  const dockerEnv = { ...(await dockerConfig({ auths: { 'p.example': { auth: b64('dock:er') } } })), XDG_RUNTIME_DIR: run };
  const d = await resolveCredentials({ registry: 'p.example', env: dockerEnv });
  assert.equal(d.kind === 'basic' && d.username, 'dock');
});

test('an invalid config file is a clear auth error', async () => {
  const cfg = await mkdtemp(join(dir, 'bad-'));
  await writeFile(join(cfg, 'config.json'), '{not json');
  await assert.rejects(
    resolveCredentials({ registry: 'x.example', env: { DOCKER_CONFIG: cfg, HOME: dir } }),
    (e: unknown) => e instanceof TarpushError && e.kind === 'auth' && e.message.includes(join(cfg, 'config.json')),
  );
});
