import type { Readable } from 'node:stream';
import type { FileTree } from '../archive/filetree.js';
import { inputError } from '../errors.js';
import { contentFromDescriptor, type BlobReader } from '../image/content.js';
import { Annotation, type Descriptor } from '../image/descriptor.js';
import { parseDigest } from '../image/digest.js';
import { checkDescriptor, parseJson } from '../image/manifest.js';
import { normaliseTag } from './names.js';
import type { ImageEntry, SourceFormat } from './source.js';

/** Reads blobs of an OCI layout by their content address, from a directory or a tar alike. */
export class LayoutBlobReader implements BlobReader {
  constructor(
    private readonly tree: FileTree,
    private readonly prefix = '',
  ) {}

  get where(): string {
    return this.tree.where;
  }

  pathOf(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return `${this.prefix}blobs/${algorithm}/${hex}`;
  }

  async openRaw(desc: Descriptor): Promise<Readable> {
    this.checkPresent(desc);
    return this.tree.open(this.pathOf(desc.digest));
  }

  /** Cheap check that a blob is there with the right size, without reading it. */
  checkPresent(desc: Descriptor): void {
    const path = this.pathOf(desc.digest);
    const size = this.tree.size(path);
    if (size === undefined) throw inputError(this.tree.where, `blob ${desc.digest} (${desc.mediaType}) is missing (no ${path})`);
    if (size !== desc.size) {
      throw inputError(this.tree.where, `blob ${desc.digest} does not match its descriptor: ${path} has ${size} bytes where ${desc.size} were expected`);
    }
  }
}

export function isOciLayout(tree: FileTree): boolean {
  return tree.has('index.json');
}

/**
 * The entries of an OCI layout's index.json. Returns an empty list when index.json lists no
 * manifests (Docker 25 archives saved that way fall back to manifest.json).
 */
export async function readLayoutIndex(tree: FileTree): Promise<Descriptor[]> {
  const where = `${tree.where}: index.json`;
  const json = parseJson(await tree.read('index.json'), where);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw inputError(where, 'is not an OCI image index (not a JSON object)');
  const index = json as Record<string, unknown>;
  if (index.schemaVersion !== 2) throw inputError(where, `is not an OCI image index (schemaVersion ${JSON.stringify(index.schemaVersion)})`);
  if (index.manifests === null || index.manifests === undefined) {
    if (index.layers !== undefined || index.config !== undefined) throw inputError(where, 'is an image manifest, not an OCI image index');
    return [];
  }
  if (!Array.isArray(index.manifests)) throw inputError(where, 'is not an OCI image index ("manifests" is not a list)');
  return index.manifests.map((m, i) => checkDescriptor(m, `${where}: manifests[${i}]`));
}

export function layoutEntries(tree: FileTree, descriptors: Descriptor[], format: SourceFormat): ImageEntry[] {
  const reader = new LayoutBlobReader(tree);
  return descriptors.map((desc, position) => {
    const refName = desc.annotations?.[Annotation.refName];
    const fullName = desc.annotations?.[Annotation.containerdName];
    const tags = new Set<string>();
    for (const n of [fullName, refName]) {
      const tag = n ? normaliseTag(n) : undefined;
      if (tag) tags.add(tag);
    }
    return {
      position,
      tags: [...tags],
      refNames: refName ? [refName] : [],
      format,
      root: contentFromDescriptor(desc, reader),
      synthesised: false,
    };
  });
}
