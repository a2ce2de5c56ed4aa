import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TarpushError } from '../../src/errors.js';
import { openRegistry, parseReference, RegistryTarget, resolveRemote, type RegistryOptions } from '../../src/registry/index.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { capturingReporter, makeImage, pushGraph, tempDir } from './fixtures.js';

let state: { path: string; remove(): Promise<void> };
before(async () => {
  state = await tempDir('tarpush-state-');
});
after(async () => {
  await state?.remove();
});

async function push(host: string, repo: string, opts: RegistryOptions, layers = [30_000]): Promise<string> {
  const img = makeImage(layers);
  const target = new RegistryTarget(openRegistry(parseReference(`${host}/${repo}`), { stateDir: state.path, access: 'push', ...opts }));
  try {
    await pushGraph(img.root, target, 'latest');
    assert.equal(await target.remoteDigest('latest'), img.manifestDesc.digest);
    return img.manifestDesc.digest;
  } finally {
    await target.close();
  }
}

function isKind(kind: string, pattern: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof TarpushError, String(e));
    assert.equal(e.kind, kind, e.message);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'));
    return true;
  };
}

describe('TLS', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ tls: true });
  });
  after(async () => {
    await reg?.stop();
  });

  test('works with --ca-file', async () => {
    await push(reg.host, 'tls/app', { caFile: reg.caFile! });
  });

  test('fails without the CA, suggesting --ca-file or --insecure (no fallback to HTTP)', async () => {
    await assert.rejects(push(reg.host, 'tls/app', {}), isKind('network', /cannot verify the TLS certificate of 127\.0\.0\.1:\d+ .*--ca-file.*--insecure/));
  });

  test('works with --insecure', async () => {
    await push(reg.host, 'tls/insecure', { insecure: true });
  });

  test('--plain-http against a TLS registry fails with a clear error', async () => {
    await assert.rejects(push(reg.host, 'tls/plain', { plainHttp: true }), isKind('network', /^127\.0\.0\.1:\d+ speaks HTTPS, not plain HTTP \(drop --plain-http\)$/));
  });

  test('a missing CA file is a usage error naming it', () => {
    assert.throws(() => openRegistry(parseReference(`${reg.host}/x`), { caFile: '/nonexistent/ca.pem' }), isKind('usage', /\/nonexistent\/ca\.pem: cannot read CA file/));
  });
});

test('connection refused is a network error naming the registry', async () => {
  const client = openRegistry(parseReference('127.0.0.1:1/x'), { plainHttp: true });
  try {
    await assert.rejects(client.headBlob(`sha256:${'a'.repeat(64)}`), isKind('network', /^cannot reach 127\.0\.0\.1:1 \(connection refused\)$/));
  } finally {
    await client.close();
  }
});

describe('basic auth', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'basic', users: { alice: 'wonder-land-pw' } });
  });
  after(async () => {
    await reg?.stop();
  });

  test('pushes and pulls with the right password', async () => {
    const digest = await push(reg.host, 'basic/app', { username: 'alice', password: 'wonder-land-pw' });
    const remote = await resolveRemote(parseReference(`${reg.host}/basic/app`), { username: 'alice', password: 'wonder-land-pw' });
    await remote.close();
    assert.equal(remote.digest, digest);
  });

  test('takes credentials from DOCKER_CONFIG', async () => {
    const dir = await tempDir();
    try {
      const { writeFile } = await import('node:fs/promises');
      await writeFile(`${dir.path}/config.json`, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('alice:wonder-land-pw').toString('base64') } } }));
      await push(reg.host, 'basic/cfg', { env: { DOCKER_CONFIG: dir.path, HOME: dir.path } });
    } finally {
      await dir.remove();
    }
  });

  test('a wrong password is an auth error', async () => {
    await assert.rejects(
      push(reg.host, 'basic/app', { username: 'alice', password: 'nope' }),
      isKind('auth', /^127\.0\.0\.1:\d+ refused the credentials for 127\.0\.0\.1:\d+\/basic\/app \(/),
    );
  });

  test('no credentials is an auth error saying so', async () => {
    await assert.rejects(
      push(reg.host, 'basic/app', { env: { HOME: '/nonexistent' } }),
      isKind('auth', /requires authentication for 127\.0\.0\.1:\d+\/basic\/app \(no credentials found/),
    );
  });
});

describe('token auth', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  before(async () => {
    reg = await startRegistry({ auth: 'token', users: { bob: 'b0b-secret-pw' } });
    proxy = await startProxy({ url: reg.url });
  });
  after(async () => {
    await proxy?.stop();
    await reg?.stop();
  });

  test('pushes with one cached token per scope set', async () => {
    const ts = reg.tokenServer!;
    const before = ts.count;
    await push(reg.host, 'tok/app', { username: 'bob', password: 'b0b-secret-pw' }, [100_000, 20]);
    const mine = ts.requests.slice(before);
    assert.equal(mine.length, 1, JSON.stringify(mine));
    assert.deepEqual(mine[0]!.scopes, ['repository:tok/app:pull,push']);
    assert.equal(mine[0]!.user, 'bob');
  });

  test('mounting asks for pull access to the source repository too', async () => {
    const ts = reg.tokenServer!;
    const img = makeImage([5000]);
    const first = new RegistryTarget(openRegistry(parseReference(`${reg.host}/tok/src`), { username: 'bob', password: 'b0b-secret-pw', stateDir: state.path, access: 'push' }));
    try {
      await pushGraph(img.root, first, 'v');
    } finally {
      await first.close();
    }
    const before = ts.count;
    const target = new RegistryTarget(
      openRegistry(parseReference(`${proxy.host}/tok/dst`), { username: 'bob', password: 'b0b-secret-pw', stateDir: state.path, access: 'push' }),
      { mountFrom: ['tok/src'] },
    );
    try {
      proxy.resetCounters();
      await pushGraph(img.root, target, 'v');
      assert.equal(proxy.stats({ method: ['PATCH', 'PUT'], path: /blobs/ }).requests, 0, 'all blobs mounted, none uploaded');
      assert.ok([...target.results.values()].every((r) => r.how === 'mounted'));
    } finally {
      await target.close();
    }
    assert.ok(ts.requests.slice(before).some((r) => r.scopes.includes('repository:tok/src:pull') && r.scopes.includes('repository:tok/dst:pull,push')));
  });

  test('asks for a new token when the old one expires', async () => {
    const ts = reg.tokenServer!;
    ts.lifetime = 2;
    try {
      const client = openRegistry(parseReference(`${reg.host}/tok/exp`), { username: 'bob', password: 'b0b-secret-pw' });
      try {
        const before = ts.count;
        await client.headBlob(`sha256:${'1'.repeat(64)}`);
        await client.headBlob(`sha256:${'2'.repeat(64)}`);
        assert.equal(ts.count - before, 1, 'cached while valid');
        await new Promise((r) => setTimeout(r, 2000));
        await client.headBlob(`sha256:${'3'.repeat(64)}`);
        assert.equal(ts.count - before, 2, 'refreshed after expiry');
      } finally {
        await client.close();
      }
    } finally {
      ts.lifetime = 300;
    }
  });

  test('a token the registry refuses mid-push is replaced and the push continues', async () => {
    const ts = reg.tokenServer!;
    const challenge = `Bearer realm="${ts.realm}",service="${ts.service}",scope="repository:tok/mid:pull,push",error="invalid_token"`;
    const before = ts.count;
    // The second chunk's PATCH meets a 401, as when a token expires during a long upload.
    let patches = 0;
    const img = makeImage([200_000]);
    const target = new RegistryTarget(
      openRegistry(parseReference(`${proxy.host}/tok/mid`), { username: 'bob', password: 'b0b-secret-pw', stateDir: state.path, access: 'push', chunkSize: 64 * 1024, retryBaseMs: 10 }),
    );
    const rule = proxy.addRule({
      method: 'PATCH',
      times: 1,
      action: { kind: 'status', status: 401, headers: { 'www-authenticate': challenge }, body: '{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}' },
    });
    try {
      await pushGraph(img.root, target, 'v', () => ({ advance: () => void patches++, reset() {}, done() {}, fail() {} }));
      assert.equal(rule.hits, 1);
      assert.equal(await target.remoteDigest('v'), img.manifestDesc.digest);
    } finally {
      rule.remove();
      await target.close();
    }
    assert.equal(ts.count - before, 2, 'one token at the start, one after the 401');
  });

  test('parallel uploads share token refreshes when the registry refuses a token', async () => {
    const ts = reg.tokenServer!;
    const challenge = `Bearer realm="${ts.realm}",service="${ts.service}",scope="repository:tok/par:pull,push",error="invalid_token"`;
    const client = openRegistry(parseReference(`${proxy.host}/tok/par`), {
      username: 'bob', password: 'b0b-secret-pw', stateDir: state.path, access: 'push', chunkSize: 32 * 1024, retryBaseMs: 10,
    });
    const img = makeImage([100_000, 90_000, 80_000, 70_000, 60_000, 50_000]);
    const target = new RegistryTarget(client);
    const before = ts.count;
    const rule = proxy.addRule({
      method: 'PATCH',
      times: 3,
      action: { kind: 'status', status: 401, headers: { 'www-authenticate': challenge }, body: '{"errors":[{"code":"UNAUTHORIZED","message":"expired"}]}' },
    });
    try {
      const { contentFromDescriptor } = await import('../../src/image/content.js');
      const { sha256 } = await import('../../src/image/digest.js');
      await Promise.all(
        img.layers.map((l) => {
          const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar', size: l.length, digest: sha256(l) };
          const node = contentFromDescriptor(desc, img.reader);
          return target.putBlob(desc, () => node.open());
        }),
      );
      assert.equal(rule.hits, 3);
      for (const l of img.layers) assert.ok((await client.headBlob(sha256(l))) === l.length);
    } finally {
      rule.remove();
      await target.close();
    }
    assert.ok(ts.count - before <= 4, `${ts.count - before} token requests`);
  });

  test('identity tokens use the OAuth2 refresh_token grant', async () => {
    const ts = reg.tokenServer!;
    const res = await fetch(ts.realm, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'password', username: 'bob', password: 'b0b-secret-pw', access_type: 'offline', service: ts.service, client_id: 'test' }),
    });
    const { refresh_token } = (await res.json()) as { refresh_token: string };
    assert.ok(refresh_token);
    const before = ts.count;
    await push(reg.host, 'tok/id', { credentials: { kind: 'identity', identityToken: refresh_token, source: 'test' } });
    const mine = ts.requests.slice(before);
    assert.ok(mine.length >= 1);
    assert.ok(mine.every((r) => r.method === 'POST' && r.grantType === 'refresh_token' && r.user === 'bob'), JSON.stringify(mine));
  });

  test('anonymous access to a private repository is an auth error', async () => {
    await assert.rejects(push(reg.host, 'tok/anon', { env: { HOME: '/nonexistent' } }), isKind('auth', /requires authentication for .*tok\/anon|refused/));
  });

  test('a user with pull-only access cannot push: auth error naming the missing scope', async () => {
    const ro = await startRegistry({
      auth: 'token',
      users: { reader: 'r3ader-pw' },
      tokenAccess: (_user, scope) => (scope.endsWith(':pull,push') || scope.endsWith(':pull') ? ['pull'] : []),
    });
    try {
      const before = ro.tokenServer!.count;
      await assert.rejects(
        push(ro.host, 'ro/app', { username: 'reader', password: 'r3ader-pw' }),
        isKind('auth', /refused the credentials for 127\.0\.0\.1:\d+\/ro\/app \(.*insufficient_scope\)/),
      );
      assert.equal(ro.tokenServer!.count - before, 1, 'no pointless token refreshes');
    } finally {
      await ro.stop();
    }
  });

  test('a wrong password is refused by the token server: auth error', async () => {
    await assert.rejects(
      push(reg.host, 'tok/app', { username: 'bob', password: 'wrong' }),
      isKind('auth', /refused the credentials for 127\.0\.0\.1:\d+\/tok\/app \(token server answered 401\)/),
    );
  });
});

test('secrets never appear in debug output or errors', async () => {
  const basic = await startRegistry({ auth: 'basic', users: { carol: 'Pa55-very-secret' } });
  const token = await startRegistry({ auth: 'token', users: { dave: 'D4ve-very-secret' } });
  const reporter = capturingReporter();
  const messages: string[] = [];
  try {
    await push(basic.host, 's/app', { username: 'carol', password: 'Pa55-very-secret', reporter }, [70_000]);
    await push(token.host, 's/app', { username: 'dave', password: 'D4ve-very-secret', reporter, chunkSize: 32 * 1024 }, [70_000]);
    for (const [reg, user] of [[basic, 'carol'], [token, 'dave']] as const) {
      try {
        await push(reg.host, 's/app', { username: user, password: 'Wr0ng-secret-pw', reporter });
      } catch (e) {
        messages.push((e as Error).message, String((e as Error).stack));
      }
    }
  } finally {
    await basic.stop();
    await token.stop();
  }
  const all = [...reporter.lines, ...messages].join('\n');
  assert.ok(reporter.lines.some((l) => l.includes('requesting a token')), 'debug output was captured');
  assert.equal(messages.length, 4);
  for (const secret of ['Pa55-very-secret', 'D4ve-very-secret', 'Wr0ng-secret-pw']) {
    assert.ok(!all.includes(secret), `${secret} leaked`);
    assert.ok(!all.includes(Buffer.from(`carol:${secret}`).toString('base64')));
    assert.ok(!all.includes(Buffer.from(`dave:${secret}`).toString('base64')));
  }
  assert.ok(!/eyJ[\w-]{10,}/.test(all), 'no JWT in output');
  assert.ok(!/authorization/i.test(all), 'no Authorization header in output');
});
