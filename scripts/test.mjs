#!/usr/bin/env node
// `npm test` entry: makes sure the external programs the registry tests run are
// installed, compiles, and runs the compiled tests with Node's test runner.
//
//   npm test                          all tests under dist/test
//   npm test -- dist/test/harness     a subset (directories and/or .test.js files)
//   npm test -- --test-name-pattern=token dist/test/harness
//
// Test files are collected here (every *.test.js below the given directories)
// rather than by `node --test DIR`: Node 20 treats every .js file inside a
// directory named "test" as a test file, which would run dist/test/helpers/*.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

const REQUIRED = [
  { file: '/usr/bin/docker-registry', pkg: 'docker-registry' },
  { file: '/usr/bin/skopeo', pkg: 'skopeo' },
  { file: '/usr/bin/openssl', pkg: 'openssl' },
  // The archive tests compress fixtures with the real tools.
  { file: '/usr/bin/zstd', pkg: 'zstd' },
  { file: '/usr/bin/xz', pkg: 'xz-utils' },
];

function fail(message, code = 1) {
  process.stderr.write(`test: ${message}\n`);
  process.exit(code);
}

function run(cmd, args) {
  process.stderr.write(`test: running ${[cmd, ...args].join(' ')}\n`);
  // stdout of the steps goes to stderr: stdout is left to the test runner's report.
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', process.stderr, 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  return r.status ?? 1;
}

function ensureTools() {
  const missing = REQUIRED.filter((t) => !existsSync(t.file));
  if (missing.length === 0) return;
  const pkgs = missing.map((t) => t.pkg);
  process.stderr.write(`test: missing ${missing.map((t) => t.file).join(', ')} (needed by the registry tests)\n`);
  if (typeof process.getuid === 'function' && process.getuid() === 0) {
    if (run('apt-get', ['update']) !== 0) fail('apt-get update failed');
    if (run('apt-get', ['install', '-y', ...pkgs]) !== 0) fail(`apt-get install -y ${pkgs.join(' ')} failed`);
    const still = REQUIRED.filter((t) => !existsSync(t.file));
    if (still.length > 0) fail(`still missing after install: ${still.map((t) => t.file).join(', ')}`);
  } else {
    fail(`install them first:\n  sudo apt-get install -y ${pkgs.join(' ')}`);
  }
}

function collect(target, out) {
  let st;
  try { st = statSync(target); } catch { fail(`no such file or directory: ${target}`); }
  if (st.isDirectory()) {
    for (const name of readdirSync(target).sort()) {
      const p = path.join(target, name);
      if (statSync(p).isDirectory()) collect(p, out);
      else if (name.endsWith('.test.js')) out.push(p);
    }
  } else {
    out.push(target);
  }
}

// dist/ is never cleaned by tsc: a compiled test whose source was deleted or
// renamed would still run. Only run tests that have a source file.
function hasSource(file) {
  const rel = path.relative(path.join(root, 'dist'), path.resolve(file));
  if (rel.startsWith('..')) return true;
  return existsSync(path.join(root, rel.replace(/\.js$/, '.ts')));
}

const major = Number(process.versions.node.split('.')[0]);
if (major !== 20) process.stderr.write(`test: warning: this project targets Node 20, running ${process.version}\n`);

ensureTools();

const tsc = path.join(root, 'node_modules', '.bin', 'tsc');
if (!existsSync(tsc)) fail('node_modules/.bin/tsc not found: run "npm ci" first');
if (run(tsc, ['-p', '.']) !== 0) fail('TypeScript compilation failed');

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('--'));
const targets = args.filter((a) => !a.startsWith('--'));
const files = [];
for (const t of targets.length > 0 ? targets : ['dist/test']) collect(t, files);
const stale = files.filter((f) => !hasSource(f));
for (const f of stale) process.stderr.write(`test: skipping ${f} (its source .ts no longer exists)\n`);
const runnable = files.filter((f) => hasSource(f));
if (runnable.length === 0) fail(`no *.test.js files under ${targets.join(' ') || 'dist/test'}`);

const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...flags, ...runnable], { stdio: 'inherit' });
if (r.error) fail(r.error.message);
process.exit(r.status ?? 1);
