/**
 * Runs the tarpush CLI the way a user would (`node bin/tarpush ...`), so CLI
 * tests are uniform: a timeout, captured output, and an environment that
 * cannot see the developer's own Docker credentials.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file is compiled to dist/test/helpers/cli.js. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const TARPUSH_BIN = path.join(REPO_ROOT, 'bin', 'tarpush');

export interface RunCliOptions {
  /**
   * Added to the environment; a value of undefined removes the variable.
   * By default HOME is a fresh empty dir and DOCKER_CONFIG, REGISTRY_AUTH_FILE
   * and XDG_RUNTIME_DIR are unset, so no real credentials leak into a test.
   */
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed (stdin is always closed: no prompt can hang). */
  input?: Buffer | string;
  cwd?: string;
  /** Killed (and the call rejected) after this many ms. Default 60 000. */
  timeoutMs?: number;
}

export interface CliResult {
  /** Exit code; null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout as bytes, for binary output (a tarball on stdout). */
  stdoutBuffer: Buffer;
}

export async function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  return runNodeScript(TARPUSH_BIN, args, opts);
}

/** runCli for any node script (used by runCli, and to test this helper itself). */
export async function runNodeScript(script: string, args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const home = opts.env?.HOME === undefined ? mkdtempSync(path.join(os.tmpdir(), 'tarpush-home-')) : undefined;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !['DOCKER_CONFIG', 'REGISTRY_AUTH_FILE', 'XDG_RUNTIME_DIR', 'FORCE_COLOR'].includes(k)) env[k] = v;
  }
  if (home) env.HOME = home;
  env.NO_COLOR = '1';
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const timeoutMs = opts.timeoutMs ?? 60_000;
  try {
    return await new Promise<CliResult>((resolve, reject) => {
      const child = spawn(process.execPath, [script, ...args], {
        cwd: opts.cwd ?? REPO_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.stdin.on('error', () => { /* the CLI may exit without reading stdin */ });
      child.stdin.end(opts.input ?? '');
      let timedOut = false;
      const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const stdoutBuffer = Buffer.concat(out);
        const stderr = Buffer.concat(err).toString('utf8');
        if (timedOut) {
          reject(new Error(`${path.basename(script)} ${args.join(' ')} timed out after ${timeoutMs} ms; stderr:\n${stderr.slice(-4000)}`));
          return;
        }
        resolve({ code, signal, stdout: stdoutBuffer.toString('utf8'), stderr, stdoutBuffer });
      });
    });
  } finally {
    if (home) rmSync(home, { recursive: true, force: true });
  }
}
