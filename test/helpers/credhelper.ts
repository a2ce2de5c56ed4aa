/**
 * Docker credential helpers and DOCKER_CONFIG directories for auth tests.
 *
 * The helper is a real executable (`docker-credential-NAME`, a node script)
 * found through PATH, speaking the docker-credential-helpers protocol:
 *   get    stdin: server URL        → stdout {"ServerURL","Username","Secret"}, or
 *                                      "credentials not found in native keychain", exit 1
 *   store  stdin: {"ServerURL","Username","Secret"}
 *   erase  stdin: server URL
 *   list   → {"<ServerURL>": "<Username>", ...}
 * Its credentials live in a JSON file beside it, and every call is logged
 * (action and server URL only, never a secret) so tests can see what the
 * client asked for.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface HelperCredential {
  Username: string;
  Secret: string;
}

export interface CredHelperCall {
  action: string;
  serverURL?: string;
}

const SCRIPT = `
const fs = require('node:fs');
const store = process.argv[2];
const callLog = process.argv[3];
const action = process.argv[4] ?? '';
const input = fs.readFileSync(0, 'utf8');
const creds = JSON.parse(fs.readFileSync(store, 'utf8'));
const save = () => fs.writeFileSync(store, JSON.stringify(creds, null, 2));
const log = (serverURL) => fs.appendFileSync(callLog, JSON.stringify({ action, serverURL }) + '\\n');
switch (action) {
  case 'get': {
    const url = input.trim();
    log(url);
    const c = creds[url];
    if (!c) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
    process.stdout.write(JSON.stringify({ ServerURL: url, Username: c.Username, Secret: c.Secret }) + '\\n');
    break;
  }
  case 'store': {
    const c = JSON.parse(input);
    log(c.ServerURL);
    creds[c.ServerURL] = { Username: c.Username, Secret: c.Secret };
    save();
    break;
  }
  case 'erase': {
    const url = input.trim();
    log(url);
    if (!creds[url]) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
    delete creds[url];
    save();
    break;
  }
  case 'list': {
    log(undefined);
    const out = {};
    for (const [url, c] of Object.entries(creds)) out[url] = c.Username;
    process.stdout.write(JSON.stringify(out) + '\\n');
    break;
  }
  default:
    process.stderr.write('unknown action: ' + action + '\\n');
    process.exit(1);
}
`;

function helperFiles(dir: string, name: string) {
  const bin = path.join(dir, 'credhelper-bin');
  return {
    bin,
    executable: path.join(bin, `docker-credential-${name}`),
    impl: path.join(bin, `docker-credential-${name}.cjs`),
    store: path.join(bin, `docker-credential-${name}.store.json`),
    calls: path.join(bin, `docker-credential-${name}.calls.jsonl`),
  };
}

/**
 * Installs `docker-credential-NAME` under `dir` holding `creds` (server URL as
 * the client will ask for it → credential) and returns the directory to put
 * first in PATH: `PATH: \`${entry}${path.delimiter}${process.env.PATH}\``.
 */
export async function installCredHelper(
  dir: string, name: string, creds: Record<string, HelperCredential>,
): Promise<string> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`bad credential helper name ${name}`);
  const f = helperFiles(dir, name);
  await mkdir(f.bin, { recursive: true });
  await writeFile(f.store, JSON.stringify(creds, null, 2));
  await writeFile(f.calls, '');
  await writeFile(f.impl, SCRIPT);
  // A sh wrapper, so the node binary path needs no shebang-safe spelling.
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  await writeFile(f.executable,
    `#!/bin/sh\nexec ${q(process.execPath)} ${q(f.impl)} ${q(f.store)} ${q(f.calls)} "$@"\n`);
  await chmod(f.executable, 0o755);
  return f.bin;
}

/** Calls made to the helper so far, oldest first. */
export async function credHelperCalls(dir: string, name: string): Promise<CredHelperCall[]> {
  const text = await readFile(helperFiles(dir, name).calls, 'utf8');
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as CredHelperCall);
}

/** The helper's credentials now (after `store`/`erase` calls by the client). */
export async function credHelperStore(dir: string, name: string): Promise<Record<string, HelperCredential>> {
  return JSON.parse(await readFile(helperFiles(dir, name).store, 'utf8')) as Record<string, HelperCredential>;
}

/** PATH value with `entry` first. */
export function pathWith(entry: string): string {
  return `${entry}${path.delimiter}${process.env.PATH ?? ''}`;
}

/** `auths` entry value: base64("user:password"), as docker login writes it. */
export function dockerAuth(user: string, password: string): string {
  return Buffer.from(`${user}:${password}`).toString('base64');
}

/**
 * Writes `dir/config.json` (e.g. { auths: { "127.0.0.1:5000": { auth } },
 * credHelpers: { ... }, credsStore: "..." }) and returns `dir`, the value for
 * DOCKER_CONFIG.
 */
export async function writeDockerConfig(dir: string, config: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}
