import type { FileTree } from '../archive/filetree.js';
import { DescribedContent, MAX_DOCUMENT_BYTES, contentFromDescriptor, readAll, type Content } from '../image/content.js';
import type { Descriptor, ImageConfig } from '../image/descriptor.js';
import { isDigest } from '../image/digest.js';
import { parseConfig, parseDocument, type ParsedDocument } from '../image/manifest.js';
import { MediaType, isManifestOrIndexType, layerCompression } from '../image/mediatypes.js';
import { formatPlatform } from '../image/platform.js';
import type { ProgressReporter } from '../progress/progress.js';
import { describeFailure, isMissing } from './errors.js';
import { digestLayer, type LayerDigests } from './layer.js';
import { checkLayoutTree } from './layout.js';
import { Limiter, defaultConcurrency } from './limit.js';
import { Findings, type VerifyReport } from './report.js';

export interface VerifyOptions {
  /** The input as the user named it, for messages. */
  where: string;
  /** The tree the image was read from: an OCI layout in it also gets file-level checks. */
  tree?: FileTree;
  /** Layers hashed at once (default: cores, between 2 and 4). */
  concurrency?: number;
  reporter?: ProgressReporter;
}

const IMAGE_CONFIG_TYPES = new Set<string>([MediaType.ociConfig, MediaType.dockerConfig]);

/**
 * Checks a whole image graph and reports every problem it finds rather than stopping at the
 * first: missing blobs, blobs that do not match their descriptors, documents that do not parse,
 * unknown media types, configs whose diff_ids disagree with the layers. Each blob is read once;
 * a layer's digest and its diff_id are computed in the same pass.
 */
export async function verifyImage(root: Content, opts: VerifyOptions): Promise<VerifyReport> {
  return verifyImages([root], opts);
}

/**
 * Several roots of one input (every entry of a layout's index.json, every image of an archive)
 * in one report: blobs they share are read once, and the file-level checks run once.
 */
export async function verifyImages(roots: Content[], opts: VerifyOptions): Promise<VerifyReport> {
  const verifier = new Verifier(opts);
  await Promise.all(roots.map((root) => verifier.walk(root)));
  if (opts.tree) {
    await checkLayoutTree(opts.tree, verifier.findings, {
      touched: verifier.touched,
      limiter: verifier.limiter,
      reporter: opts.reporter,
    });
  }
  return verifier.findings.report();
}

interface LayerOutcome {
  digests?: LayerDigests;
  failed: boolean;
}

class Verifier {
  readonly findings = new Findings();
  readonly limiter: Limiter;
  /** Digests of every blob this walk read (or tried to), whatever the outcome. */
  readonly touched = new Set<string>();
  private readonly documents = new Map<string, Promise<void>>();
  private readonly layers = new Map<string, Promise<LayerOutcome>>();
  private readonly configs = new Map<string, Promise<ImageConfig | undefined>>();

  constructor(private readonly opts: VerifyOptions) {
    this.limiter = new Limiter(opts.concurrency ?? defaultConcurrency());
  }

  async walk(root: Content): Promise<void> {
    let desc: Descriptor;
    try {
      desc = await root.describe();
    } catch (e) {
      this.findings.problem(`the image cannot be described: ${describeFailure(e)}`);
      return;
    }
    if (!isManifestOrIndexType(desc.mediaType)) {
      this.findings.problem(`root ${desc.digest} has unknown media type ${JSON.stringify(desc.mediaType)} (not a manifest or index)`, {
        digest: desc.digest,
      });
      await this.blobOnly(root, desc, `root ${desc.digest}`);
      return;
    }
    await this.document(root, desc, 'root');
  }

  /** A manifest or index, once per digest however many parents list it. */
  private document(content: Content, desc: Descriptor, role: string): Promise<void> {
    let job = this.documents.get(desc.digest);
    if (!job) {
      job = this.checkDocument(content, desc, role);
      this.documents.set(desc.digest, job);
    }
    return job;
  }

  private async checkDocument(content: Content, desc: Descriptor, role: string): Promise<void> {
    const kind = desc.mediaType.includes('index') || desc.mediaType.includes('list') ? 'index' : 'manifest';
    const label = `${role} ${kind} ${desc.digest}`;
    const bytes = await this.readSmall(content, desc, label);
    if (!bytes) return;
    let doc: ParsedDocument;
    try {
      doc = parseDocument(bytes, label, desc.mediaType);
    } catch (e) {
      this.findings.problem(`${label} does not parse: ${stripPrefix(describeFailure(e), label)}`, { digest: desc.digest });
      return;
    }
    this.findings.checked.manifests++;
    const children = await this.childrenOf(content, doc, label, desc.digest);
    if (!children) return;
    if (doc.kind === 'index') {
      await Promise.all(
        doc.index.manifests.map(async (child, i) => {
          const childRole = `${label} → manifests[${i}]${child.platform ? ` (${formatPlatform(child.platform)})` : ''}`;
          const node = children[i]!;
          if (!isManifestOrIndexType(child.mediaType)) {
            this.findings.problem(`${childRole}: unknown media type ${JSON.stringify(child.mediaType)}`, { digest: child.digest });
            await this.blobOnly(node, child, childRole);
            return;
          }
          await this.document(node, child, childRole);
        }),
      );
      return;
    }
    await this.checkImage(doc, children, label);
  }

  private async checkImage(doc: ParsedDocument & { kind: 'manifest' }, children: Content[], label: string): Promise<void> {
    const { config, layers } = doc.manifest;
    const isImage = IMAGE_CONFIG_TYPES.has(config.mediaType);
    const configJob = isImage
      ? this.config(children[0]!, config, `${label}: config ${config.digest}`)
      : this.blobOnly(children[0]!, config, `${label}: config`).then(() => undefined);
    const layerJobs = layers.map((layer, i) => this.layer(children[i + 1]!, layer, isImage));
    const [imageConfig, outcomes] = await Promise.all([configJob, Promise.all(layerJobs)]);
    if (!isImage || !imageConfig) return;
    const diffIds = imageConfig.rootfs?.diff_ids;
    if (!Array.isArray(diffIds)) {
      // Artifacts made before OCI 1.1 (ORAS and others) borrow the image config type with a `{}`
      // config and non-layer blobs: not an image, but not broken either.
      if (imageConfig.rootfs === undefined && layers.every((l) => layerCompression(l.mediaType) === undefined)) {
        this.findings.warning(`${label}: looks like an artifact (image config type without rootfs, no layer blobs)`, { digest: config.digest });
        return;
      }
      this.findings.problem(`${label}: config ${config.digest} has no rootfs.diff_ids list`, { digest: config.digest });
      return;
    }
    if (diffIds.length !== layers.length) {
      this.findings.problem(
        `${label}: config ${config.digest} lists ${diffIds.length} diff_ids but the manifest has ${layers.length} layers`,
        { digest: config.digest },
      );
    }
    layers.forEach((layer, i) => {
      const expected = diffIds[i];
      const actual = outcomes[i]!.digests?.diffId;
      if (expected === undefined || outcomes[i]!.failed || actual === undefined) return;
      if (!isDigest(expected)) {
        this.findings.problem(`${label}: config diff_ids[${i}] is not a valid digest: ${JSON.stringify(expected)}`, { digest: config.digest });
        return;
      }
      if (expected !== actual) {
        this.findings.problem(
          `${label}: layer ${i} (${layer.digest}) uncompressed hashes to ${actual}, but the config's diff_ids[${i}] is ${expected}`,
          { digest: layer.digest },
        );
      }
    });
  }

  private config(content: Content, desc: Descriptor, label: string): Promise<ImageConfig | undefined> {
    let job = this.configs.get(desc.digest);
    if (!job) {
      job = (async () => {
        const bytes = await this.readSmall(content, desc, label);
        if (!bytes) return undefined;
        this.findings.checked.configs++;
        try {
          return parseConfig(bytes, label);
        } catch (e) {
          this.findings.problem(`${label} does not parse: ${stripPrefix(describeFailure(e), label)}`, { digest: desc.digest });
          return undefined;
        }
      })();
      this.configs.set(desc.digest, job);
    }
    return job;
  }

  /** A layer, read once per digest even when several images (or platforms) share it. */
  private layer(content: Content, desc: Descriptor, wantDiffId: boolean, what = 'layer'): Promise<LayerOutcome> {
    let job = this.layers.get(desc.digest);
    if (!job) {
      job = this.limiter.run(async () => {
        this.touched.add(desc.digest);
        const progress = this.opts.reporter?.start(desc.digest.slice(7, 19), 'verifying', desc.size);
        try {
          const digests = await digestLayer(content, desc, { diffId: wantDiffId, where: this.opts.where });
          if (what === 'layer') this.findings.checked.layers++;
          this.findings.checked.bytes += desc.size;
          progress?.done();
          return { digests, failed: false };
        } catch (e) {
          progress?.fail();
          if (isMissing(e) && desc.urls?.length) {
            this.findings.warning(`layer ${desc.digest} is not included (foreign layer, fetched from ${desc.urls[0]})`, { digest: desc.digest });
          } else {
            this.findings.problem(`${what} ${desc.digest} (${desc.mediaType}): ${describeFailure(e)}`, { digest: desc.digest });
          }
          return { failed: true };
        }
      });
      this.layers.set(desc.digest, job);
    }
    return job;
  }

  /** A blob that is only checked against its descriptor (artifacts, unknown media types). */
  private async blobOnly(content: Content, desc: Descriptor, label: string): Promise<void> {
    await this.layer(content, desc, false, `${label}: blob`);
  }

  private async readSmall(content: Content, desc: Descriptor, label: string): Promise<Buffer | undefined> {
    this.touched.add(desc.digest);
    try {
      const bytes = await readAll(await content.open(), MAX_DOCUMENT_BYTES, label);
      this.findings.checked.bytes += bytes.length;
      return bytes;
    } catch (e) {
      this.findings.problem(`${label}: ${describeFailure(e)}`, { digest: desc.digest });
      return undefined;
    }
  }

  private async childrenOf(content: Content, doc: ParsedDocument, label: string, digest: string): Promise<Content[] | undefined> {
    // Children from the document just verified, so it is not read again (for any other kind of
    // node, its own children() is the only way to get them).
    if (content instanceof DescribedContent) {
      const descs = doc.kind === 'index' ? doc.index.manifests : [doc.manifest.config, ...doc.manifest.layers];
      return descs.map((d) => contentFromDescriptor(d, content.reader));
    }
    try {
      return await content.children();
    } catch (e) {
      this.findings.problem(`${label}: ${describeFailure(e)}`, { digest });
      return undefined;
    }
  }
}

function stripPrefix(message: string, prefix: string): string {
  return message.startsWith(`${prefix}: `) ? message.slice(prefix.length + 2) : message;
}
