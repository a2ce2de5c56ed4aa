import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import { promisify } from 'node:util';
import { Agent, fetch } from 'undici';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { registryCaller, seedImage, sha256Digest, uploadBlob } from '../helpers/seed.js';
import { bearerChallenge } from '../helpers/tokenserver.js';

const run = promisify(execFile);

describe('plain HTTP registry', () => {
  let reg: TestRegistry;
  before(async () => { reg = await startRegistry(); });
  after(async () => { await reg.stop(); });

  it('answers /v2/ with 200 and the API version header', async () => {
    assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
    assert.equal(reg.url, `http://${reg.host}`);
    const res = await fetch(`${reg.url}/v2/`);
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  });

  it('takes a monolithic blob upload and serves it back', async () => {
    const caller = registryCaller(reg);
    try {
      const data = Buffer.from('hello blob');
      const digest = await uploadBlob(caller, 'harness/blob', data);
      assert.equal(digest, sha256Digest(data));
      const head = await caller.fetch(`/v2/harness/blob/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(data.length));
      const get = await caller.fetch(`/v2/harness/blob/blobs/${digest}`);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
    } finally {
      await caller.close();
    }
  });

  it('stores a manifest by tag and serves it byte for byte', async () => {
    const image = await seedImage(reg, 'harness/image', 'v1');
    const res = await fetch(`${reg.url}/v2/harness/image/manifests/v1`, {
      headers: { accept: image.mediaType },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), image.manifestDigest);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest);
    // The filesystem storage really is the per-registry temp dir.
    assert.ok(existsSync(`${reg.storageDir}/docker/registry/v2/repositories/harness/image`));
  });

  it('is readable by skopeo', async () => {
    const image = await seedImage(reg, 'harness/skopeo', 'latest');
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/harness/skopeo:latest`]);
    const info = JSON.parse(stdout) as { Digest: string; Layers: string[] };
    assert.equal(info.Digest, image.manifestDigest);
    assert.deepEqual(info.Layers, image.layers.map((l) => l.digest));
  });
});

describe('registry lifecycle', () => {
  it('runs several registries side by side and cleans up after stop', async () => {
    const regs = await Promise.all([startRegistry(), startRegistry(), startRegistry()]);
    try {
      assert.equal(new Set(regs.map((r) => r.host)).size, 3);
      assert.equal(new Set(regs.map((r) => r.storageDir)).size, 3);
    } finally {
      await Promise.all(regs.map((r) => r.stop()));
    }
    for (const r of regs) {
      assert.equal(existsSync(r.storageDir), false);
      await assert.rejects(fetch(`${r.url}/v2/`));
    }
  });
});

describe('TLS registry', () => {
  let reg: TestRegistry;
  before(async () => { reg = await startRegistry({ tls: true }); });
  after(async () => { await reg.stop(); });

  it('serves HTTPS with a certificate from the generated CA', async () => {
    assert.equal(reg.url, `https://${reg.host}`);
    assert.ok(reg.caFile && reg.caPem);
    assert.match(await readFile(reg.caFile, 'utf8'), /BEGIN CERTIFICATE/);
    const dispatcher = new Agent({ connect: { ca: reg.caPem } });
    try {
      const res = await fetch(`${reg.url}/v2/`, { dispatcher });
      await res.arrayBuffer();
      assert.equal(res.status, 200);
      // The certificate names localhost too (SAN), not just the IP.
      const byName = await fetch(`https://localhost:${reg.host.split(':')[1]}/v2/`, { dispatcher });
      await byName.arrayBuffer();
      assert.equal(byName.status, 200);
    } finally {
      await dispatcher.close();
    }
  });

  it('is refused by a client that does not trust the CA', async () => {
    const dispatcher = new Agent();
    try {
      await assert.rejects(fetch(`${reg.url}/v2/`, { dispatcher }), (err: Error & { cause?: { code?: string } }) => {
        assert.match(String(err.cause?.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER_CERT/);
        return true;
      });
    } finally {
      await dispatcher.close();
    }
  });

  it('is readable by skopeo trusting the CA through --cert-dir', async () => {
    const image = await seedImage(reg, 'harness/tls', 'v1');
    const certDir = await mkdtemp(path.join(os.tmpdir(), 'tarpush-certdir-'));
    try {
      await copyFile(reg.caFile!, path.join(certDir, 'ca.crt'));
      const { stdout } = await run('skopeo', ['inspect', '--cert-dir', certDir, `docker://${reg.host}/harness/tls:v1`]);
      assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, image.manifestDigest);
      await assert.rejects(run('skopeo', ['inspect', `docker://${reg.host}/harness/tls:v1`]), /certificate/);
    } finally {
      await rm(certDir, { recursive: true, force: true });
    }
  });
});

describe('basic-auth registry', () => {
  let reg: TestRegistry;
  before(async () => { reg = await startRegistry({ auth: 'basic', users: { alice: 's3cret', bob: 'hunter2' } }); });
  after(async () => { await reg.stop(); });

  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  it('challenges anonymous requests with a Basic realm', async () => {
    const res = await fetch(`${reg.url}/v2/`);
    await res.arrayBuffer();
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="tarpush-test"');
  });

  it('accepts every configured user with the right password', async () => {
    for (const [user, password] of Object.entries(reg.users)) {
      const res = await fetch(`${reg.url}/v2/`, { headers: { authorization: basic(user, password) } });
      await res.arrayBuffer();
      assert.equal(res.status, 200, user);
    }
  });

  it('rejects a wrong password and an unknown user', async () => {
    for (const authorization of [basic('alice', 'wrong'), basic('mallory', 's3cret')]) {
      const res = await fetch(`${reg.url}/v2/`, { headers: { authorization } });
      await res.arrayBuffer();
      assert.equal(res.status, 401);
    }
  });

  it('lets an authenticated client push and pull', async () => {
    const image = await seedImage(reg, 'harness/basic', 'v1', { user: 'bob' });
    const anonymous = await fetch(`${reg.url}/v2/harness/basic/manifests/v1`, { headers: { accept: image.mediaType } });
    await anonymous.arrayBuffer();
    assert.equal(anonymous.status, 401);
    const res = await fetch(`${reg.url}/v2/harness/basic/manifests/v1`, {
      headers: { accept: image.mediaType, authorization: basic('bob', 'hunter2') },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest);
  });
});

/** Parses `Bearer realm="…",service="…",scope="…"` into its parameters. */
function parseChallenge(header: string | null): Record<string, string> {
  assert.ok(header, 'no WWW-Authenticate header');
  const m = /^Bearer\s+(.*)$/i.exec(header);
  assert.ok(m, `not a Bearer challenge: ${header}`);
  const params: Record<string, string> = {};
  for (const p of m[1]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!] = p[2]!;
  return params;
}

function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, c] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(c!, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}

describe('token-auth registry', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({
      auth: 'token',
      users: { alice: 's3cret', reader: 'readonly' },
      // reader may only pull; alice gets what she asks for; anonymous may pull harness/public.
      tokenAccess: (user, scope) => {
        if (user === 'alice') return ['*'];
        if (user === 'reader') return ['pull'];
        return scope.startsWith('repository:harness/public:') ? ['pull'] : [];
      },
    });
  });
  after(async () => { await reg.stop(); });

  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  async function getToken(query: Record<string, string | string[]>, authorization?: string) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) for (const item of [v].flat()) q.append(k, item);
    return fetch(`${reg.tokenServer!.realm}?${q}`, { headers: authorization ? { authorization } : {} });
  }

  it('does a full round trip: challenge, token, authorized request', async () => {
    const image = await seedImage(reg, 'harness/token', 'v1', { user: 'alice' });
    const url = `${reg.url}/v2/harness/token/blobs/${image.configDigest}`;
    const first = await fetch(url, { method: 'HEAD' });
    assert.equal(first.status, 401);
    assert.equal(first.headers.get('www-authenticate'), bearerChallenge(reg.tokenServer!, 'repository:harness/token:pull'));
    const challenge = parseChallenge(first.headers.get('www-authenticate'));
    assert.equal(challenge.realm, reg.tokenServer!.realm);
    assert.equal(challenge.service, reg.tokenServer!.service);
    assert.equal(challenge.scope, 'repository:harness/token:pull');

    const before = reg.tokenServer!.count;
    const tokenRes = await getToken({ service: challenge.service!, scope: challenge.scope! }, basic('reader', 'readonly'));
    assert.equal(tokenRes.status, 200);
    const body = await tokenRes.json() as { token: string; access_token: string; expires_in: number; issued_at: string };
    assert.equal(body.token, body.access_token);
    assert.equal(body.expires_in, 300);
    assert.ok(!Number.isNaN(Date.parse(body.issued_at)));
    assert.equal(reg.tokenServer!.count, before + 1);
    const last = reg.tokenServer!.requests.at(-1)!;
    assert.equal(last.user, 'reader');
    assert.deepEqual(last.scopes, ['repository:harness/token:pull']);

    const { header, claims } = decodeJwt(body.token);
    assert.equal(header.alg, 'ES256');
    assert.equal((header.x5c as string[]).length, 1);
    assert.equal(claims.aud, reg.tokenServer!.service);
    assert.equal(claims.sub, 'reader');
    assert.ok(Number.isInteger(claims.exp) && Number.isInteger(claims.iat) && Number.isInteger(claims.nbf));
    assert.deepEqual(claims.access, [{ type: 'repository', name: 'harness/token', actions: ['pull'] }]);

    const second = await fetch(url, { method: 'HEAD', headers: { authorization: `Bearer ${body.token}` } });
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('docker-content-digest'), image.configDigest);
  });

  it('grants only what tokenAccess allows', async () => {
    // reader asks for push too but gets a pull-only token: the upload is refused.
    const res = await getToken({ service: reg.tokenServer!.service, scope: 'repository:harness/ro:pull,push' }, basic('reader', 'readonly'));
    const { token } = await res.json() as { token: string };
    assert.deepEqual(decodeJwt(token).claims.access, [{ type: 'repository', name: 'harness/ro', actions: ['pull'] }]);
    const upload = await fetch(`${reg.url}/v2/harness/ro/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    await upload.arrayBuffer();
    assert.equal(upload.status, 401);
    assert.equal(parseChallenge(upload.headers.get('www-authenticate')).error, 'insufficient_scope');
  });

  it('serves the catalog with a registry:catalog:* token and takes several scopes', async () => {
    await seedImage(reg, 'harness/listed', 'v1', { user: 'alice' });
    const res = await getToken({
      service: reg.tokenServer!.service,
      scope: ['registry:catalog:*', 'repository:harness/listed:pull'],
    }, basic('alice', 's3cret'));
    const { token } = await res.json() as { token: string };
    assert.equal((decodeJwt(token).claims.access as unknown[]).length, 2);
    const catalog = await fetch(`${reg.url}/v2/_catalog`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(catalog.status, 200);
    assert.ok(((await catalog.json()) as { repositories: string[] }).repositories.includes('harness/listed'));
  });

  it('gives anonymous users only anonymous access', async () => {
    const image = await seedImage(reg, 'harness/public', 'v1', { user: 'alice' });
    await seedImage(reg, 'harness/private', 'v1', { user: 'alice' });
    for (const [repo, expected] of [['harness/public', 200], ['harness/private', 401]] as const) {
      const res = await getToken({ service: reg.tokenServer!.service, scope: `repository:${repo}:pull` });
      assert.equal(res.status, 200);
      const { token } = await res.json() as { token: string };
      const manifest = await fetch(`${reg.url}/v2/${repo}/manifests/v1`, {
        headers: { authorization: `Bearer ${token}`, accept: image.mediaType },
      });
      await manifest.arrayBuffer();
      assert.equal(manifest.status, expected, repo);
    }
  });

  it('answers 401 to a wrong password or unknown user', async () => {
    for (const authorization of [basic('alice', 'nope'), basic('nobody', 's3cret')]) {
      const res = await getToken({ service: reg.tokenServer!.service, scope: 'repository:harness/x:pull' }, authorization);
      await res.arrayBuffer();
      assert.equal(res.status, 401);
    }
    assert.equal(reg.tokenServer!.requests.at(-1)!.user, undefined);
  });

  it('supports OAuth2 POST with password and refresh_token grants (identity tokens)', async () => {
    const post = (form: Record<string, string>) => fetch(reg.tokenServer!.realm, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
    const service = reg.tokenServer!.service;
    const scope = 'repository:harness/oauth:pull,push';
    const login = await post({ grant_type: 'password', username: 'alice', password: 's3cret', access_type: 'offline', client_id: 'tarpush', service, scope });
    assert.equal(login.status, 200);
    const { refresh_token: refresh, access_token: access } = await login.json() as { refresh_token: string; access_token: string };
    assert.ok(refresh && access);
    assert.deepEqual(reg.tokenServer!.refreshTokens.at(-1), refresh);

    const renewed = await post({ grant_type: 'refresh_token', refresh_token: refresh, client_id: 'tarpush', service, scope });
    assert.equal(renewed.status, 200);
    const renewedBody = await renewed.json() as { access_token: string; scope: string };
    assert.equal(renewedBody.scope, scope);
    const upload = await fetch(`${reg.url}/v2/harness/oauth/blobs/uploads/`, {
      method: 'POST', headers: { authorization: `Bearer ${renewedBody.access_token}` },
    });
    await upload.arrayBuffer();
    assert.equal(upload.status, 202);

    for (const bad of <Record<string, string>[]>[
      { grant_type: 'refresh_token', refresh_token: 'not-issued', service, scope },
      { grant_type: 'password', username: 'alice', password: 'wrong', service, scope },
    ]) {
      const res = await post(bad);
      await res.arrayBuffer();
      assert.equal(res.status, 401);
    }
  });

  it('hands out refresh tokens on GET with offline_token=true', async () => {
    const res = await getToken({ service: reg.tokenServer!.service, offline_token: 'true', client_id: 'tarpush' }, basic('alice', 's3cret'));
    const body = await res.json() as { refresh_token?: string };
    assert.ok(body.refresh_token);
  });

  it('has a lifetime knob and a refuse switch', async (t) => {
    const server = reg.tokenServer!;
    t.after(() => { server.lifetime = 300; server.refuse = false; });
    server.lifetime = 2;
    const res = await getToken({ service: server.service, scope: 'repository:harness/x:pull' }, basic('alice', 's3cret'));
    const body = await res.json() as { token: string; expires_in: number };
    assert.equal(body.expires_in, 2);
    const { claims } = decodeJwt(body.token);
    assert.equal((claims.exp as number) - (claims.iat as number), 2);
    server.refuse = 503;
    const refused = await getToken({ service: server.service }, basic('alice', 's3cret'));
    await refused.arrayBuffer();
    assert.equal(refused.status, 503);
  });
});

describe('token-auth registry over TLS', () => {
  it('serves its token server over HTTPS with the same CA', async (t) => {
    const reg = await startRegistry({ auth: 'token', tls: true });
    t.after(() => reg.stop());
    assert.match(reg.tokenServer!.realm, /^https:\/\/127\.0\.0\.1:\d+\/token$/);
    const image = await seedImage(reg, 'harness/tlstoken', 'v1');
    const caller = registryCaller(reg);
    t.after(() => caller.close());
    const res = await caller.fetch('/v2/harness/tlstoken/manifests/v1', {
      headers: { accept: image.mediaType }, scope: 'repository:harness/tlstoken:pull',
    });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest);
  });
});

describe('registry config knobs', () => {
  it('takes a configure hook that edits the generated config', async (t) => {
    const reg = await startRegistry({
      configure: (config) => {
        (config.storage as Record<string, unknown>).maintenance = { readonly: { enabled: true } };
      },
    });
    t.after(() => reg.stop());
    assert.match(await readFile(reg.configFile, 'utf8'), /readonly:/);
    const res = await fetch(`${reg.url}/v2/harness/ro/blobs/uploads/`, { method: 'POST' });
    await res.arrayBuffer();
    // Read-only mode refuses uploads: proof that the hook's change reached the registry.
    assert.equal(res.status, 405);
  });

  it('returns relative Locations with relativeUrls', async (t) => {
    const reg = await startRegistry({ relativeUrls: true });
    t.after(() => reg.stop());
    const res = await fetch(`${reg.url}/v2/harness/rel/blobs/uploads/`, { method: 'POST' });
    await res.arrayBuffer();
    assert.equal(res.status, 202);
    assert.match(res.headers.get('location')!, /^\/v2\/harness\/rel\/blobs\/uploads\//);
  });
});
