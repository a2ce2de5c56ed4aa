import type { Readable } from 'node:stream';
import type { Progress } from '../progress/progress.js';
import type { Descriptor } from './descriptor.js';

/**
 * A destination of the graph copy: a registry repository, an OCI layout directory or an archive
 * being written. The copy calls exists() first, putBlob() for every config and layer, then
 * putManifest() children before parents, and the root last with its tag.
 */
/** How a blob got to the target, when that is more than "sent". */
export interface PutBlobResult {
  /** Mounted from another repository of the same registry: no bytes were sent. */
  mounted?: boolean;
}

export interface Target {
  /** A name for messages: `registry.example/team/app`, `oci:/path`, `out.tar`. */
  readonly where: string;
  exists(desc: Descriptor): Promise<boolean>;
  /**
   * Stores a blob. `open` is called (possibly more than once, for retries) to get the bytes,
   * already verified against `desc` as they stream.
   */
  putBlob(desc: Descriptor, open: () => Promise<Readable>, progress?: Progress): Promise<PutBlobResult | void>;
  /** Stores a manifest or index; `tag` only for the root of what is being copied. */
  putManifest(desc: Descriptor, bytes: Buffer, tag?: string): Promise<void>;
}
