/**
 * Runs the real CNCF distribution registry (Debian's docker-registry 2.8) for
 * tests: one private process, port, storage and config per call, so tests can
 * start registries in parallel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { makeSigningCert, makeTestPki, type TestPki } from './certs.js';
import { freePort } from './ports.js';
import { startTokenServer, type TokenAccessFn, type TokenServer } from './tokenserver.js';
import { toYaml, type YamlValue } from './yaml.js';

export const REGISTRY_BINARY = process.env.TARPUSH_TEST_REGISTRY_BIN ?? '/usr/bin/docker-registry';

/** Users created when a basic/token registry is started without `users`. */
export const DEFAULT_USERS: Readonly<Record<string, string>> = Object.freeze({ testuser: 'testpassword' });

export interface StartRegistryOptions {
  /** Serve HTTPS with a certificate signed by a fresh CA (see `caFile`). */
  tls?: boolean;
  auth?: 'none' | 'basic' | 'token';
  /** user → password, for basic and token auth. Defaults to DEFAULT_USERS. */
  users?: Record<string, string>;
  /**
   * Token mode: which actions `user` (undefined when anonymous) gets for
   * `scope` ("repository:NAME:pull,push"). Default: authenticated users get
   * everything they ask for, anonymous users get nothing.
   */
  tokenAccess?: TokenAccessFn;
  /** Token mode: lifetime of issued tokens in seconds (default 300). */
  tokenLifetime?: number;
  /** `http.relativeurls`: Location headers become "/v2/..." instead of absolute URLs. */
  relativeUrls?: boolean;
  /** Last word on the generated config (e.g. storage.maintenance.readonly), edited in place. */
  configure?: (config: Record<string, YamlValue | undefined>) => void;
}

export interface TestRegistry {
  /** "127.0.0.1:PORT" — what goes into an image reference. */
  host: string;
  /** "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT". */
  url: string;
  /** PEM file of the CA that signed the server certificate (tls only). */
  caFile?: string;
  /** The CA as PEM text (tls only), e.g. for undici `new Agent({ connect: { ca } })`. */
  caPem?: string;
  /** Directory holding only ca.crt (tls only): for `skopeo --cert-dir` and other Go tools. */
  certDir?: string;
  /** Root of the registry's filesystem storage (docker/registry/v2/... lives below). */
  storageDir: string;
  auth: 'none' | 'basic' | 'token';
  /** Users accepted by basic/token auth (empty without auth). */
  users: Record<string, string>;
  /** The token server that the registry's challenge points at (token auth only). */
  tokenServer?: TokenServer;
  configFile: string;
  logFile: string;
  /** Everything the registry wrote to stdout/stderr so far (log level error). */
  readLog(): Promise<string>;
  stop(): Promise<void>;
}

interface Running {
  child: ChildProcess;
  dir: string;
}

// Registries still running, killed synchronously if the test process exits
// without stopping them (a failed assertion before `stop`, an uncaught error).
const running = new Set<Running>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const r of running) {
      killGroup(r.child, 'SIGKILL');
      try { rmSync(r.dir, { recursive: true, force: true }); } catch { /* exiting anyway */ }
    }
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try { process.kill(-child.pid, signal); } catch { /* already gone */ }
}

// The registry runs under a tiny sh supervisor whose stdin is a pipe from this
// process: when the pipe closes — `stop()`, or this process dying in any way,
// even SIGKILL — the supervisor terminates the registry. No orphans survive a
// crashed test run. The supervisor exits with the registry's status, so an
// early exit (bad config, port taken) is seen as the child's 'exit'.
const SUPERVISOR = [
  'exec 3<&0',
  '"$0" serve "$1" 3<&- </dev/null &',
  'pid=$!',
  // If this process died without stop(), nobody else removes the temp dir.
  '{ cat <&3 >/dev/null; kill -TERM "$pid" 2>/dev/null; sleep 1; rm -rf "$2"; } &',
  'exec 3<&-',
  'wait "$pid"',
].join('\n');

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  if (!existsSync(REGISTRY_BINARY)) {
    throw new Error(`${REGISTRY_BINARY} not found: install it with "apt-get install -y docker-registry"`);
  }
  installExitHook();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tarpush-registry-'));
  let tokenServer: TokenServer | undefined;
  try {
    const auth = opts.auth ?? 'none';
    const users = auth === 'none' ? {} : { ...(opts.users ?? DEFAULT_USERS) };
    const storageDir = path.join(dir, 'storage');
    await mkdir(storageDir);

    let pki: TestPki | undefined;
    let certDir: string | undefined;
    if (opts.tls) {
      pki = await makeTestPki(dir);
      // Docker/containers-style certs.d directory: Go tools (skopeo --cert-dir) read *.crt as CAs.
      certDir = path.join(dir, 'certs.d');
      await mkdir(certDir);
      await writeFile(path.join(certDir, 'ca.crt'), pki.caPem);
    }

    let authConfig: YamlValue | undefined;
    if (auth === 'basic') {
      const htpasswd = path.join(dir, 'htpasswd');
      const lines = Object.entries(users).map(([u, p]) => {
        if (u.includes(':')) throw new Error(`htpasswd user names cannot contain ":" (${u})`);
        // Cost 4 (the minimum Go accepts): the registry checks it on every request.
        return `${u}:${bcrypt.hashSync(p, 4)}`;
      });
      await writeFile(htpasswd, lines.join('\n') + '\n');
      authConfig = { htpasswd: { realm: 'tarpush-test', path: htpasswd } };
    } else if (auth === 'token') {
      const signing = await makeSigningCert(dir);
      const service = 'tarpush-test-registry';
      const issuer = 'tarpush-test-issuer';
      tokenServer = await startTokenServer({
        service, issuer, signing, users,
        ...(opts.tokenAccess ? { access: opts.tokenAccess } : {}),
        ...(opts.tokenLifetime !== undefined ? { lifetime: opts.tokenLifetime } : {}),
        ...(pki ? { tls: { certPem: pki.certPem, keyPem: pki.keyPem } } : {}),
      });
      authConfig = {
        token: { realm: tokenServer.realm, service, issuer, rootcertbundle: signing.certFile },
      };
    }

    const configFile = path.join(dir, 'config.yml');
    const logFile = path.join(dir, 'registry.log');
    const scheme = pki ? 'https' : 'http';

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const host = `127.0.0.1:${port}`;
      const config: Record<string, YamlValue | undefined> = {
        version: '0.1',
        log: { level: 'error', formatter: 'text', accesslog: { disabled: true } },
        storage: {
          filesystem: { rootdirectory: storageDir },
          delete: { enabled: true },
          maintenance: { uploadpurging: { enabled: false } },
        },
        http: {
          addr: host,
          secret: randomBytes(16).toString('hex'),
          headers: { 'X-Content-Type-Options': ['nosniff'] },
          tls: pki ? { certificate: pki.certFile, key: pki.keyFile } : undefined,
          relativeurls: opts.relativeUrls ? true : undefined,
        },
        auth: authConfig,
      };
      opts.configure?.(config);
      await writeFile(configFile, toYaml(config));

      const logFd = openSync(logFile, 'a');
      let child: ChildProcess;
      try {
        child = spawn('/bin/sh', ['-c', SUPERVISOR, REGISTRY_BINARY, configFile, dir], {
          // The registry reads REGISTRY_* variables as config overrides: keep them out.
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
          stdio: ['pipe', logFd, logFd],
          detached: true,
        });
      } finally {
        closeSync(logFd);
      }
      const entry: Running = { child, dir };
      running.add(entry);
      // A forgotten registry must not keep the test process alive; the exit hook kills it.
      child.unref();
      (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();

      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const url = `${scheme}://${host}`;
      const ready = await waitUntilServing(url, pki?.caPem, exited);
      if (ready !== 'ready') {
        running.delete(entry);
        killGroup(child, 'SIGKILL');
        const log = await readFile(logFile, 'utf8').catch(() => '');
        if (/address already in use/i.test(log) && attempt < 5) {
          await writeFile(logFile, '');
          continue;
        }
        throw new Error(`docker-registry did not start (${ready}); log:\n${log}`);
      }

      let stopped: Promise<void> | undefined;
      const stop = (): Promise<void> => {
        stopped ??= (async () => {
          if (child.exitCode === null && child.signalCode === null) {
            // unref'd at start: hold the event loop open until it has really exited.
            child.ref();
            child.stdin?.end();
            const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 5000);
            await exited;
            clearTimeout(timer);
          }
          // Reap the supervisor's watcher too (it exits once the pipe is closed).
          killGroup(child, 'SIGKILL');
          running.delete(entry);
          if (tokenServer) await tokenServer.stop();
          rmSync(dir, { recursive: true, force: true });
        })();
        return stopped;
      };

      return {
        host, url, auth, storageDir, users, configFile, logFile, stop,
        ...(pki && certDir ? { caFile: pki.caFile, caPem: pki.caPem, certDir } : {}),
        ...(tokenServer ? { tokenServer } : {}),
        readLog: () => readFile(logFile, 'utf8'),
      };
    }
  } catch (err) {
    if (tokenServer) await tokenServer.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Polls GET /v2/ until it answers 200 or 401 (auth on), the child exits, or 15 s pass. */
async function waitUntilServing(url: string, ca: string | undefined, exited: Promise<number | null>): Promise<string> {
  let exitCode: number | null | undefined;
  void exited.then((code) => { exitCode = code; });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) return `exited with code ${exitCode}`;
    const status = await probe(`${url}/v2/`, ca);
    if (status === 200 || status === 401) return 'ready';
    await new Promise((r) => setTimeout(r, 25));
  }
  return 'no answer on /v2/ within 15 s';
}

function probe(url: string, ca: string | undefined): Promise<number | undefined> {
  return new Promise((resolve) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { agent: false, timeout: 1000, ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}
