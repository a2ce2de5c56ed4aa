import type { Readable } from 'node:stream';
import { TarpushError } from '../errors.js';
import type { Descriptor } from '../image/descriptor.js';
import { sha256, type Digest } from '../image/digest.js';
import { isManifestOrIndexType } from '../image/mediatypes.js';
import type { PutBlobResult, Target } from '../image/target.js';
import type { Progress } from '../progress/progress.js';
import type { RegistryClient, UploadResult } from './client.js';

export interface RegistryTargetOptions {
  /** Other repositories of the same registry that may already hold the blobs (cross-repo mount). */
  mountFrom?: string[];
}

/** A registry repository as the destination of a copy. */
export class RegistryTarget implements Target {
  readonly where: string;
  /** How each blob got there during this run, by digest (for the push summary). */
  readonly results = new Map<Digest, UploadResult>();

  constructor(
    readonly client: RegistryClient,
    private readonly opts: RegistryTargetOptions = {},
  ) {
    this.where = client.where;
  }

  async exists(desc: Descriptor): Promise<boolean> {
    if (isManifestOrIndexType(desc.mediaType)) {
      return (await this.client.headManifest(desc.digest)) !== undefined;
    }
    return (await this.client.headBlob(desc.digest)) !== undefined;
  }

  /** How the blob got there is recorded in `results` (mounted blobs send nothing). */
  async putBlob(desc: Descriptor, open: () => Promise<Readable>, progress?: Progress): Promise<PutBlobResult> {
    const result = await this.client.uploadBlob(desc, open, progress, {
      ...(this.opts.mountFrom ? { mountFrom: this.opts.mountFrom } : {}),
    });
    this.results.set(desc.digest, result);
    return { mounted: result.how === 'mounted' };
  }

  async putManifest(desc: Descriptor, bytes: Buffer, tag?: string): Promise<void> {
    const digest = await this.client.putManifest(tag ?? desc.digest, bytes, desc.mediaType);
    if (digest !== desc.digest) {
      throw new TarpushError('registry', `${this.where}: the registry stored manifest ${desc.digest} as ${digest}`);
    }
  }

  /** The digest the registry now serves for `tag` (Docker-Content-Digest of a HEAD), if any. */
  async remoteDigest(tag: string): Promise<Digest | undefined> {
    const head = await this.client.headManifest(tag);
    if (!head) return undefined;
    if (head.digest) return head.digest;
    // Some registries leave Docker-Content-Digest off HEAD answers: hash what GET serves.
    return sha256((await this.client.getManifest(tag)).bytes);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
