import { openTree } from '../archive/open.js';
import type { FileTree, OpenTreeOptions } from '../archive/filetree.js';
import { inputError } from '../errors.js';
import { dockerOciEntries, legacyEntries } from './docker-archive.js';
import { parseSaveManifest, type SaveEntry } from './docker-save-manifest.js';
import { layoutEntries, readLayoutIndex } from './oci-layout.js';
import type { ImageEntry, ImageSource, SourceFormat } from './source.js';
import { DEFAULT_SYNTHESIS, type SynthesisOptions } from './synthesised.js';

export interface OpenSourceOptions extends OpenTreeOptions {
  synthesis?: SynthesisOptions;
}

/**
 * Opens any input tarpush reads — a file (plain or compressed tar), `-` for stdin, or an OCI
 * layout directory — and lists its images. The format is told by content, never by file name.
 */
export async function openImageSource(path: string, opts: OpenSourceOptions = {}): Promise<ImageSource> {
  const tree = await openTree(path, opts);
  try {
    const { format, entries } = await readEntries(tree, opts.synthesis ?? DEFAULT_SYNTHESIS);
    return { where: tree.where, format, entries, tree, close: () => tree.close() };
  } catch (e) {
    await tree.close();
    throw e;
  }
}

async function readEntries(tree: FileTree, synthesis: SynthesisOptions): Promise<{ format: SourceFormat; entries: ImageEntry[] }> {
  const hasIndex = tree.has('index.json');
  const hasManifest = tree.has('manifest.json');
  if (!hasIndex && !hasManifest) {
    const hint = tree.has('repositories')
      ? 'it has a "repositories" file but no manifest.json (a pre-Docker-1.10 save, which is not supported)'
      : tree.kind === 'directory'
        ? 'a directory must be an OCI layout with index.json'
        : 'it has neither manifest.json nor index.json (a plain filesystem tar?)';
    throw inputError(tree.where, `not a container image: ${hint}`);
  }
  const saved: SaveEntry[] | undefined = hasManifest ? parseSaveManifest(await tree.read('manifest.json'), `${tree.where}: manifest.json`) : undefined;
  if (hasIndex) {
    const index = await readLayoutIndex(tree);
    if (index.length > 0) {
      if (saved) return { format: 'docker-oci-archive', entries: await dockerOciEntries(tree, index, saved) };
      const format: SourceFormat = tree.kind === 'directory' ? 'oci-layout' : 'oci-archive';
      return { format, entries: layoutEntries(tree, index, format) };
    }
    if (!saved) throw inputError(`${tree.where}: index.json`, 'lists no manifests');
  }
  const entries = await legacyEntries(tree, saved!, synthesis);
  return { format: entries[0]!.format, entries };
}
