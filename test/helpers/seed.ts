/**
 * Puts images into a test registry with plain HTTP calls, independent of
 * tarpush's own registry client, so client tests can start from known content
 * and check what the client wrote without trusting the code under test.
 */
import { createHash } from 'node:crypto';
import { Agent, fetch, Headers, type Dispatcher, type RequestInit, type Response } from 'undici';
import type { TestRegistry } from './registry.js';

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface RegistryCaller {
  /** fetch against the registry, with its CA trusted and credentials applied. */
  fetch(pathAndQuery: string, init?: RequestInit & { scope?: string }): Promise<Response>;
  close(): Promise<void>;
}

/**
 * A raw caller for a test registry: trusts its CA, and authenticates as
 * `user` (default: the registry's first user) with Basic or with a token
 * fetched from its token server for the given scope.
 */
export function registryCaller(reg: TestRegistry, user?: string | null): RegistryCaller {
  const dispatcher: Dispatcher = new Agent(reg.caPem ? { connect: { ca: reg.caPem } } : {});
  const name = user === null ? undefined : (user ?? Object.keys(reg.users)[0]);
  const password = name !== undefined ? reg.users[name] : undefined;
  const basic = name !== undefined ? `Basic ${Buffer.from(`${name}:${password ?? ''}`).toString('base64')}` : undefined;
  const tokens = new Map<string, string>();

  const authorization = async (scope: string | undefined): Promise<string | undefined> => {
    if (reg.tokenServer) {
      const key = scope ?? '';
      let token = tokens.get(key);
      if (token === undefined) {
        const q = new URLSearchParams({ service: reg.tokenServer.service });
        if (scope) q.append('scope', scope);
        const res = await fetch(`${reg.tokenServer.realm}?${q}`, {
          dispatcher, headers: basic ? { authorization: basic } : {},
        });
        if (res.status !== 200) throw new Error(`token server answered ${res.status}`);
        token = ((await res.json()) as { token: string }).token;
        tokens.set(key, token);
      }
      return `Bearer ${token}`;
    }
    return basic;
  };

  return {
    async fetch(pathAndQuery, init = {}) {
      const { scope, ...rest } = init;
      const headers = new Headers(rest.headers);
      const authz = await authorization(scope);
      if (authz && !headers.has('authorization')) headers.set('authorization', authz);
      const target = /^https?:/.test(pathAndQuery) ? pathAndQuery : `${reg.url}${pathAndQuery}`;
      return fetch(target, { ...rest, headers, dispatcher });
    },
    close: () => dispatcher.close(),
  };
}

/** Monolithic upload (POST, then PUT ?digest=) of one blob; returns its digest. */
export async function uploadBlob(caller: RegistryCaller, repo: string, data: Buffer): Promise<string> {
  const digest = sha256Digest(data);
  const scope = `repository:${repo}:pull,push`;
  const start = await caller.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST', scope });
  await start.arrayBuffer();
  if (start.status !== 202) throw new Error(`POST blob upload answered ${start.status}`);
  const location = start.headers.get('location');
  if (!location) throw new Error('POST blob upload answered without Location');
  const put = new URL(location, start.url);
  put.searchParams.set('digest', digest);
  const res = await caller.fetch(put.toString(), {
    method: 'PUT', body: data, scope,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`PUT blob answered ${res.status}`);
  return digest;
}

export interface SeededImage {
  manifest: Buffer;
  manifestDigest: string;
  mediaType: string;
  config: Buffer;
  configDigest: string;
  layers: { data: Buffer; digest: string }[];
}

/**
 * Pushes a small OCI image (config + the given layer blobs, random ones by
 * default) to `repo:tag` and returns exactly what was pushed.
 */
export async function seedImage(
  reg: TestRegistry, repo: string, tag: string,
  opts: { layers?: Buffer[]; user?: string; architecture?: string } = {},
): Promise<SeededImage> {
  const caller = registryCaller(reg, opts.user);
  try {
    const layerData = opts.layers ?? [Buffer.from(`layer of ${repo}:${tag} ${Math.random()}`)];
    const layers = [];
    for (const data of layerData) layers.push({ data, digest: await uploadBlob(caller, repo, data) });
    const config = Buffer.from(JSON.stringify({
      architecture: opts.architecture ?? 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }));
    const configDigest = await uploadBlob(caller, repo, config);
    const mediaType = 'application/vnd.oci.image.manifest.v1+json';
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.data.length })),
    }));
    const res = await caller.fetch(`/v2/${repo}/manifests/${tag}`, {
      method: 'PUT', body: manifest, headers: { 'content-type': mediaType }, scope: `repository:${repo}:pull,push`,
    });
    await res.arrayBuffer();
    if (res.status !== 201) throw new Error(`PUT manifest answered ${res.status}`);
    return { manifest, manifestDigest: sha256Digest(manifest), mediaType, config, configDigest, layers };
  } finally {
    await caller.close();
  }
}
