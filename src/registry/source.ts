import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { TarpushError } from '../errors.js';
import { contentFromDescriptor, type BlobReader, type DescribedContent } from '../image/content.js';
import type { Descriptor } from '../image/descriptor.js';
import { hasherFor, parseDigest, type Digest } from '../image/digest.js';
import { isManifestOrIndexType } from '../image/mediatypes.js';
import { parseDocument } from '../image/manifest.js';
import type { RegistryClient } from './client.js';
import { openRegistry, type RegistryOptions } from './options.js';
import { formatReference, type Reference } from './reference.js';

/**
 * A registry repository as a source of blobs. Manifests live under /manifests/ (and the ones
 * already fetched are kept); everything else streams from /blobs/ with resume on breaks.
 */
export class RegistryReader implements BlobReader {
  readonly where: string;
  private readonly documents = new Map<Digest, Buffer>();

  constructor(readonly client: RegistryClient) {
    this.where = client.where;
  }

  /** Keeps a manifest's bytes so reading the graph does not fetch it twice. */
  remember(digest: Digest, bytes: Buffer): void {
    this.documents.set(digest, bytes);
  }

  async openRaw(desc: Descriptor): Promise<Readable> {
    const known = this.documents.get(desc.digest);
    if (known) return Readable.from([known]);
    if (isManifestOrIndexType(desc.mediaType)) {
      const m = await this.client.getManifest(desc.digest, [desc.mediaType]);
      this.documents.set(desc.digest, m.bytes);
      return Readable.from([m.bytes]);
    }
    return this.client.openBlob(desc);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export interface RemoteImage {
  root: DescribedContent;
  mediaType: string;
  digest: Digest;
  reader: RegistryReader;
  close(): Promise<void>;
}

function digestOf(bytes: Buffer, like: Digest): Digest {
  const { algorithm } = parseDigest(like);
  return `${algorithm}:${hasherFor(like).update(bytes).digest('hex')}`;
}

/**
 * Fetches the manifest or index a reference names (by digest when it has one, else by tag) and
 * returns it as the root of a Content graph. Pulled by digest, the bytes must hash to it.
 */
export async function resolveRemote(
  ref: Reference,
  opts: RegistryOptions & { client?: RegistryClient } = {},
): Promise<RemoteImage> {
  const client = opts.client ?? openRegistry(ref, opts);
  const reader = new RegistryReader(client);
  try {
    const wanted = ref.digest ?? ref.tag ?? 'latest';
    const m = await client.getManifest(wanted);
    const name = formatReference(ref);
    let digest: Digest;
    if (ref.digest) {
      const actual = digestOf(m.bytes, ref.digest);
      if (actual !== ref.digest) {
        throw new TarpushError('registry', `${name}: the registry sent a manifest whose digest is ${actual}`);
      }
      digest = ref.digest;
    } else {
      // Trust our own hash over the header (some proxies drop or rewrite Docker-Content-Digest).
      const algorithm = m.digest.startsWith('sha512:') ? 'sha512' : 'sha256';
      digest = `${algorithm}:${createHash(algorithm).update(m.bytes).digest('hex')}`;
    }
    const parsed = parseDocument(m.bytes, name, m.mediaType || undefined);
    const mediaType = parsed.mediaType;
    const desc: Descriptor = { mediaType, size: m.bytes.length, digest };
    reader.remember(digest, m.bytes);
    return { root: contentFromDescriptor(desc, reader), mediaType, digest, reader, close: () => reader.close() };
  } catch (e) {
    if (!opts.client) await client.close();
    throw e;
  }
}
