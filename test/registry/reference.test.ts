import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TarpushError } from '../../src/errors.js';
import {
  apiHost,
  formatReference,
  parseReference,
  sameImageName,
} from '../../src/registry/reference.js';

const D = `sha256:${'a'.repeat(64)}`;

const valid: Array<[string, string]> = [
  ['alpine', 'docker.io/library/alpine:latest'],
  ['alpine:3.19', 'docker.io/library/alpine:3.19'],
  ['user/app', 'docker.io/user/app:latest'],
  ['docker.io/alpine', 'docker.io/library/alpine:latest'],
  ['index.docker.io/library/alpine:edge', 'docker.io/library/alpine:edge'],
  ['registry-1.docker.io/user/app:v1', 'docker.io/user/app:v1'],
  ['localhost/x', 'localhost/x:latest'],
  ['localhost:5000/x', 'localhost:5000/x:latest'],
  ['127.0.0.1:5000/x', '127.0.0.1:5000/x:latest'],
  ['[::1]:5000/x', '[::1]:5000/x:latest'],
  ['[::1]:5000/team/x:1.0', '[::1]:5000/team/x:1.0'],
  [`host.example/x:tag@${D}`, `host.example/x:tag@${D}`],
  [`host.example/x@${D}`, `host.example/x@${D}`],
  [`alpine@${D}`, `docker.io/library/alpine@${D}`],
  ['Registry.Example.COM:443/a/b/c:T_1.x-y', 'registry.example.com:443/a/b/c:T_1.x-y'],
  ['a/b__c/d-e--f/g.h', 'docker.io/a/b__c/d-e--f/g.h:latest'],
  ['x:' + 'a'.repeat(128), 'docker.io/library/x:' + 'a'.repeat(128)],
];

for (const [input, expected] of valid) {
  test(`parseReference accepts ${input}`, () => {
    assert.equal(formatReference(parseReference(input)), expected);
  });
}

test('tag is defaulted only when neither tag nor digest is given', () => {
  assert.deepEqual(parseReference(`h.io/x@${D}`), { registry: 'h.io', repository: 'x', digest: D });
  assert.deepEqual(parseReference('h.io/x'), { registry: 'h.io', repository: 'x', tag: 'latest' });
  assert.deepEqual(parseReference(`h.io/x:t@${D}`), { registry: 'h.io', repository: 'x', tag: 't', digest: D });
});

const invalid: Array<[string, RegExp]> = [
  ['', /empty reference/],
  ['Alpine', /lowercase|missing/],
  ['docker.io/Library/alpine', /lowercase/],
  ['host.io/x:', /invalid tag/],
  ['host.io/x:-bad', /invalid tag/],
  ['host.io/x:.bad', /invalid tag/],
  ['x:' + 'a'.repeat(129), /invalid tag/],
  ['host.io/x@sha256:abc', /invalid digest/],
  ['host.io/x@md5:' + 'a'.repeat(32), /invalid digest/],
  ['host.io//x', /empty path component/],
  ['host.io/x/', /empty path component/],
  ['host.io/-x', /invalid repository path component/],
  ['host.io/x_', /invalid repository path component/],
  ['host.io/x...y', /invalid repository path component/],
  ['-host.io/x', /invalid registry host/],
  ['host.io:99999/x', /invalid registry host/],
  ['host.io/', /missing repository/],
  ['a b', /whitespace/],
  ['_x/y', /invalid repository path component/],
  ['host.io/x:tag:more', /invalid tag/],
  ['a/' + 'b'.repeat(260), /longer than 255/],
];

for (const [input, problem] of invalid) {
  test(`parseReference rejects ${JSON.stringify(input.slice(0, 40))}`, () => {
    assert.throws(
      () => parseReference(input),
      (e: unknown) => {
        assert.ok(e instanceof TarpushError);
        assert.equal(e.kind, 'usage');
        assert.ok(e.message.startsWith(`invalid reference "${input}": `), e.message);
        assert.match(e.message, problem);
        return true;
      },
    );
  });
}

test('apiHost maps Docker Hub to its API host and leaves others alone', () => {
  assert.equal(apiHost('docker.io'), 'registry-1.docker.io');
  assert.equal(apiHost('index.docker.io'), 'registry-1.docker.io');
  assert.equal(apiHost('localhost:5000'), 'localhost:5000');
  assert.equal(apiHost('[::1]:5000'), '[::1]:5000');
});

test('sameImageName matches short and fully qualified names', () => {
  assert.ok(sameImageName('alpine', 'docker.io/library/alpine:latest'));
  assert.ok(sameImageName('alpine:latest', 'index.docker.io/library/alpine'));
  assert.ok(sameImageName('user/app:1', 'docker.io/user/app:1'));
  assert.ok(!sameImageName('alpine', 'alpine:3'));
  assert.ok(!sameImageName('alpine', 'localhost/alpine'));
  assert.ok(!sameImageName('alpine', 'Not A Name'));
  assert.ok(!sameImageName(`x@${D}`, 'x'));
});
