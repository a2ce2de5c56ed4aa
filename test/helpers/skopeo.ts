/**
 * skopeo (containers/image, an independent Go client) as a second opinion in
 * tests: to check what tarpush pushed, or to put reference images into a
 * test registry.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestRegistry } from './registry.js';

const run = promisify(execFile);

export const SKOPEO_BINARY = '/usr/bin/skopeo';

/**
 * Flags that let skopeo reach `reg`: TLS trust (or --tls-verify=false for plain
 * HTTP) and credentials of `user` (default: the first user; null = anonymous).
 * `side` prefixes the flags for copy: 'src' → --src-cert-dir, 'dest' → --dest-creds.
 */
export function skopeoFlags(reg: TestRegistry, side: '' | 'src' | 'dest' = '', user?: string | null): string[] {
  const p = side === '' ? '--' : `--${side}-`;
  const flags = reg.certDir ? [`${p}cert-dir`, reg.certDir] : [`${p}tls-verify=false`];
  const authOn = reg.auth !== 'none';
  const name = user === null ? undefined : (user ?? Object.keys(reg.users)[0]);
  if (authOn && name !== undefined) flags.push(`${p}creds`, `${name}:${reg.users[name] ?? ''}`);
  else flags.push(`${p}no-creds`);
  return flags;
}

/** Runs skopeo with `args`; rejects with its stderr on failure. */
export async function skopeo(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  try {
    const { stdout } = await run(SKOPEO_BINARY, args, { env: opts.env ?? process.env, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** `skopeo inspect` of `repo:tag` (or repo@digest) in `reg`; `raw` returns the manifest bytes as text. */
export async function skopeoInspect(
  reg: TestRegistry, ref: string, opts: { raw?: boolean; config?: boolean; user?: string | null } = {},
): Promise<string> {
  return skopeo([
    'inspect', ...(opts.raw ? ['--raw'] : []), ...(opts.config ? ['--config'] : []),
    ...skopeoFlags(reg, '', opts.user), `docker://${reg.host}/${ref}`,
  ]);
}
