import type { FileTree } from '../archive/filetree.js';
import { inputError } from '../errors.js';
import type { Content } from '../image/content.js';
import type { Descriptor } from '../image/descriptor.js';
import { isDigest, sha256 } from '../image/digest.js';
import { parseConfig, parseDocument } from '../image/manifest.js';
import { MediaType, isManifestType } from '../image/mediatypes.js';
import { normaliseSelector } from './names.js';
import { LayoutBlobReader, layoutEntries } from './oci-layout.js';
import type { SaveEntry } from './docker-save-manifest.js';
import type { ImageEntry } from './source.js';
import { ArchiveLayer, ForeignLayer, MemberBlob, SynthesisedManifest, isForeign, type SynthesisOptions } from './synthesised.js';

/** Images of a legacy `docker save` or crane/kaniko tarball: manifests are synthesised. */
export async function legacyEntries(tree: FileTree, saved: SaveEntry[], opts: SynthesisOptions): Promise<ImageEntry[]> {
  return Promise.all(
    saved.map(async (entry, position) => {
      const at = `${tree.where}: manifest.json entry ${position}`;
      if (!tree.has(entry.config)) throw inputError(at, `config ${entry.config} is missing from the archive`);
      const configMediaType = opts.format === 'docker' ? MediaType.dockerConfig : MediaType.ociConfig;
      const config = new MemberBlob(tree, entry.config, configMediaType);
      const parsed = parseConfig(await config.read(), `${tree.where}: ${entry.config}`);
      const diffIds = parsed.rootfs?.diff_ids ?? [];
      if (!Array.isArray(diffIds) || diffIds.some((d) => !isDigest(d))) throw inputError(`${tree.where}: ${entry.config}`, 'rootfs.diff_ids is not a list of digests');
      if (diffIds.length !== entry.layers.length) {
        throw inputError(at, `lists ${entry.layers.length} layers but its config has ${diffIds.length} diff_ids`);
      }
      const layers: Content[] = entry.layers.map((member, i) => {
        const diffId = diffIds[i]!;
        const source = entry.layerSources[diffId];
        if (source && isForeign(source) && !tree.has(member)) return new ForeignLayer(source, tree.where);
        if (!tree.has(member)) throw inputError(at, `layer ${member} is missing from the archive`);
        return new ArchiveLayer(tree, member, diffId, opts);
      });
      const crane = entry.config.startsWith('sha256:') || entry.layers.some((l) => l.endsWith('.tar.gz'));
      const tags = entry.repoTags.map((t) => normaliseSelector(t)).filter((t): t is string => t !== undefined);
      return {
        position,
        tags,
        refNames: [],
        format: crane ? 'crane-tarball' : 'docker-archive',
        root: new SynthesisedManifest(config, layers, opts.format),
        synthesised: true,
      } satisfies ImageEntry;
    }),
  );
}

/**
 * Docker 25+ and containerd-store archives hold an OCI layout beside manifest.json. The layout
 * half is the image as it was, so its manifest digest is what a push keeps; manifest.json only
 * contributes the RepoTags of each image.
 */
export async function dockerOciEntries(tree: FileTree, index: Descriptor[], saved: SaveEntry[] | undefined): Promise<ImageEntry[]> {
  const entries = layoutEntries(tree, index, 'docker-oci-archive');
  if (!saved) return entries;
  const reader = new LayoutBlobReader(tree);
  const tagsByConfig = new Map<string, string[]>();
  for (const s of saved) {
    const hex = /(?:^|\/)(?:sha256[:/])?([a-f0-9]{64})(?:\.json)?$/.exec(s.config)?.[1];
    if (hex) tagsByConfig.set(`sha256:${hex}`, s.repoTags);
  }
  for (const entry of entries) {
    const desc = await entry.root.describe();
    if (!isManifestType(desc.mediaType)) continue;
    const path = reader.pathOf(desc.digest);
    if (!tree.has(path) || (tree.size(path) ?? 0) > 4 * 1024 * 1024) continue;
    const bytes = await tree.read(path);
    if (sha256(bytes) !== desc.digest) continue; // verify reports it; tags are a nicety
    const doc = parseDocument(bytes, `${tree.where}: ${path}`, desc.mediaType);
    if (doc.kind !== 'manifest') continue;
    for (const t of tagsByConfig.get(doc.manifest.config.digest) ?? []) {
      const tag = normaliseSelector(t);
      if (tag && !entry.tags.includes(tag)) entry.tags.push(tag);
    }
  }
  return entries;
}
