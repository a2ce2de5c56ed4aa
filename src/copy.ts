import { readContent, type Content } from './image/content.js';
import type { Descriptor } from './image/descriptor.js';
import { isManifestOrIndexType } from './image/mediatypes.js';
import type { Target } from './image/target.js';
import { silentReporter, type ProgressReporter } from './progress/progress.js';
import { isForeign } from './formats/synthesised.js';
import { checkInterrupted } from './interrupt.js';
import { Limiter } from './limit.js';

/**
 * The graph copy every transfer is made of (push, pull, layout import): walk from the root,
 * skip what the target already has, send blobs with bounded concurrency, then manifests children
 * first, and the root last with its tag — so a target never has a tag pointing at an incomplete
 * image.
 */
export interface CopyOptions {
  /** Blobs transferred at once (layers are also compressed inside these slots). */
  jobs?: number;
  reporter?: ProgressReporter;
}

export interface CopyStats {
  blobsSent: number;
  blobsSkipped: number;
  /** Blobs the registry mounted from another repository (no bytes sent). */
  blobsMounted: number;
  bytesSent: number;
  manifestsSent: number;
}

/** One copy session: blobs shared by several images (e.g. push --all) are sent once. */
export class Copier {
  readonly stats: CopyStats = { blobsSent: 0, blobsSkipped: 0, blobsMounted: 0, bytesSent: 0, manifestsSent: 0 };
  private readonly blobs = new Map<string, Promise<void>>();
  private readonly manifests = new Map<string, Promise<void>>();
  private readonly limiter: Limiter;
  private readonly reporter: ProgressReporter;

  constructor(
    private readonly target: Target,
    opts: CopyOptions = {},
  ) {
    this.limiter = new Limiter(Math.max(1, opts.jobs ?? 4));
    this.reporter = opts.reporter ?? silentReporter;
  }

  /** Copies the graph under `root`; `tag` names the root at the target. Returns its descriptor. */
  async copy(root: Content, tag?: string): Promise<Descriptor> {
    return this.copyManifest(root, tag);
  }

  private async copyManifest(node: Content, tag?: string): Promise<Descriptor> {
    const early = node.known?.();
    if (early && tag === undefined && (await this.target.exists(early))) {
      this.reporter.debug(`${early.digest}: already at ${this.target.where}`);
      return early;
    }
    const children = await node.children();
    await Promise.all(children.map((child) => this.copyChild(child)));
    const desc = await node.describe();
    const key = `${desc.digest}\u0000${tag ?? ''}`;
    let pending = this.manifests.get(key);
    if (!pending) {
      pending = (async () => {
        const bytes = await readContent(node);
        await this.target.putManifest(desc, bytes, tag);
        this.stats.manifestsSent++;
      })();
      this.manifests.set(key, pending);
    }
    await pending;
    return desc;
  }

  private async copyChild(child: Content): Promise<void> {
    // Manifests (an index's children) recurse; everything else is a blob.
    if (isManifestOrIndexType(child.known?.()?.mediaType)) {
      await this.copyManifest(child);
      return;
    }
    // Describing may compress the layer: do it inside a slot so it overlaps other uploads.
    await this.limiter.run(async () => {
      checkInterrupted(this.target.where);
      const desc = await child.describe();
      if (isForeign(desc) || desc.urls?.length) return; // the registry fetches these from their URLs
      let pending = this.blobs.get(desc.digest);
      if (!pending) {
        pending = this.sendBlob(child, desc);
        this.blobs.set(desc.digest, pending);
      }
      await pending;
      // A 10 GiB image must not keep all its compressed layers on disk until the end.
      await child.release?.();
    });
  }

  private async sendBlob(child: Content, desc: Descriptor): Promise<void> {
    const short = desc.digest.slice(7, 19);
    if (await this.target.exists(desc)) {
      this.stats.blobsSkipped++;
      this.reporter.start(short, 'exists', desc.size).done('exists');
      return;
    }
    const progress = this.reporter.start(short, /config|container\.image/.test(desc.mediaType) ? 'config' : 'layer', desc.size);
    let result;
    try {
      result = await this.target.putBlob(desc, () => child.open(), progress);
    } catch (e) {
      progress.fail();
      throw e;
    }
    if (result?.mounted) {
      progress.done('mounted');
      this.stats.blobsMounted++;
      return;
    }
    progress.done();
    this.stats.blobsSent++;
    this.stats.bytesSent += desc.size;
  }
}

export async function copyImage(root: Content, target: Target, tag?: string, opts: CopyOptions = {}): Promise<Descriptor> {
  return new Copier(target, opts).copy(root, tag);
}
