import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findChallenge, parseChallenges } from '../../src/registry/challenge.js';

test('parses the Docker Hub bearer challenge', () => {
  const c = parseChallenges(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
  );
  assert.deepEqual(c, [
    {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/alpine:pull',
      },
    },
  ]);
});

test('scheme and parameter names are case-insensitive, values keep their case', () => {
  const [c] = parseChallenges('BASIC Realm="Registry Realm"');
  assert.equal(c!.scheme, 'basic');
  assert.equal(c!.params.realm, 'Registry Realm');
  assert.ok(findChallenge(parseChallenges('bAsIc realm=x'), 'Basic'));
});

test('quoted strings keep commas and unescape backslashes', () => {
  const [c] = parseChallenges('Bearer realm="https://a/t?x=1,2", scope="repository:a:pull,push", note="say \\"hi\\" \\\\ ok"');
  assert.equal(c!.params.realm, 'https://a/t?x=1,2');
  assert.equal(c!.params.scope, 'repository:a:pull,push');
  assert.equal(c!.params.note, 'say "hi" \\ ok');
});

test('several challenges in one header, with unquoted tokens and odd spacing', () => {
  const c = parseChallenges('Newauth realm="apps", type=1,  title="Login to \\"apps\\"", Basic realm="simple" ,Bearer realm=https://x/token , service = reg');
  assert.deepEqual(
    c.map((x) => x.scheme),
    ['newauth', 'basic', 'bearer'],
  );
  assert.deepEqual(c[0]!.params, { realm: 'apps', type: '1', title: 'Login to "apps"' });
  assert.deepEqual(c[1]!.params, { realm: 'simple' });
  assert.deepEqual(c[2]!.params, { realm: 'https://x/token', service: 'reg' });
});

test('token68 challenges and bare schemes', () => {
  const c = parseChallenges('Negotiate abc+/def==, Basic, Bearer realm="r"');
  assert.equal(c[0]!.scheme, 'negotiate');
  assert.equal(c[0]!.token68, 'abc+/def==');
  assert.equal(c[1]!.scheme, 'basic');
  assert.deepEqual(c[1]!.params, {});
  assert.deepEqual(c[2]!.params, { realm: 'r' });
});

test('multiple header values and garbage do not throw', () => {
  const c = parseChallenges(['Basic realm="a"', 'Bearer realm="b"']);
  assert.deepEqual(c.map((x) => x.params.realm), ['a', 'b']);
  assert.deepEqual(parseChallenges(undefined), []);
  assert.deepEqual(parseChallenges(''), []);
  assert.doesNotThrow(() => parseChallenges('Bearer realm="unterminated'));
  assert.equal(parseChallenges('Bearer realm="unterminated')[0]!.params.realm, 'unterminated');
  assert.doesNotThrow(() => parseChallenges('=,=,"'));
});
