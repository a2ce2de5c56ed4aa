import type { ProgressReporter } from '../progress/progress.js';
import { Authenticator } from './auth.js';
import { RegistryClient } from './client.js';
import { resolveCredentials, type Credentials } from './credentials.js';
import { apiHost, type Reference } from './reference.js';
import { Transport } from './transport.js';
import { UploadStateStore, defaultStateDir } from './upload-state.js';

/** Everything a user can set about talking to a registry (the CLI maps flags onto this). */
export interface RegistryOptions {
  plainHttp?: boolean;
  insecure?: boolean;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  /** Upload chunk size in bytes (default 16 MiB; raised to the registry's OCI-Chunk-Min-Length). */
  chunkSize?: number;
  reporter?: ProgressReporter;
  /** Directory for resumable upload state (default $TARPUSH_STATE_DIR or $XDG_CACHE_HOME/tarpush/uploads). */
  stateDir?: string;
  userAgent?: string;
  /** Attempts per request (default 5) and first backoff step in ms (default 500). */
  maxAttempts?: number;
  retryBaseMs?: number;
  /** Environment for credentials and proxies (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Proxy loopback registries too (they bypass HTTP(S)_PROXY by default, as with Docker). */
  proxyLoopback?: boolean;
  /** Credentials to use instead of looking them up (library callers). */
  credentials?: Credentials;
  /** 'push' asks for push access from the first token (default 'pull'). */
  access?: 'pull' | 'push';
}

/** A client for the repository a reference names. Call `close()` when done. */
export function openRegistry(ref: Pick<Reference, 'registry' | 'repository'>, opts: RegistryOptions = {}): RegistryClient {
  const env = opts.env ?? process.env;
  const transport = new Transport(apiHost(ref.registry), {
    ...(opts.plainHttp !== undefined ? { plainHttp: opts.plainHttp } : {}),
    ...(opts.insecure !== undefined ? { insecure: opts.insecure } : {}),
    ...(opts.caFile !== undefined ? { caFile: opts.caFile } : {}),
    ...(opts.certFile !== undefined ? { certFile: opts.certFile } : {}),
    ...(opts.keyFile !== undefined ? { keyFile: opts.keyFile } : {}),
    ...(opts.reporter ? { reporter: opts.reporter } : {}),
    ...(opts.userAgent ? { userAgent: opts.userAgent } : {}),
    ...(opts.maxAttempts !== undefined ? { maxAttempts: opts.maxAttempts } : {}),
    ...(opts.retryBaseMs !== undefined ? { retryBaseMs: opts.retryBaseMs } : {}),
    ...(opts.proxyLoopback !== undefined ? { proxyLoopback: opts.proxyLoopback } : {}),
    env,
  });
  const explicit = opts.credentials;
  const auth = new Authenticator(transport, ref.registry, () =>
    explicit
      ? Promise.resolve(explicit)
      : resolveCredentials({
          registry: ref.registry,
          repository: ref.repository,
          env,
          ...(opts.username !== undefined ? { username: opts.username } : {}),
          ...(opts.password !== undefined ? { password: opts.password } : {}),
        }),
  );
  return new RegistryClient({
    registry: ref.registry,
    repository: ref.repository,
    transport,
    auth,
    access: opts.access ?? 'pull',
    state: new UploadStateStore(opts.stateDir ?? defaultStateDir(env)),
    ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
    ...(opts.retryBaseMs !== undefined ? { retryBaseMs: opts.retryBaseMs } : {}),
  });
}
