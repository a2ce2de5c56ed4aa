import { TarpushError, usageError } from '../errors.js';
import { DescribedContent, readContent, type Content } from '../image/content.js';
import type { Platform } from '../image/descriptor.js';
import { parseConfig, platformOfConfig } from '../image/manifest.js';
import { isIndexType, isManifestOrIndexType, isManifestType } from '../image/mediatypes.js';
import { formatPlatform, platformMatches } from '../image/platform.js';
import { normaliseSelector } from './names.js';
import type { ImageEntry, ImageSource } from './source.js';
import { SynthesisedManifest } from './synthesised.js';

/** The one place that decides which image of an input a command works on. */
export interface Selection {
  /** A tag (normalised: `alpine` = docker.io/library/alpine:latest), a layout ref name, or `@N`. */
  image?: string;
  platform?: Platform;
}

export interface SelectedImage {
  entry: ImageEntry;
  /** The entry's root, or the manifest inside it that --platform picked. */
  content: Content;
  /** How to name this image to a user: its first tag, ref name, or @N. */
  label: string;
}

export function entryLabel(entry: ImageEntry): string {
  return entry.tags[0] ?? entry.refNames[0] ?? `@${entry.position}`;
}

function choices(source: ImageSource): string {
  return source.entries.map((e) => [`@${e.position}`, ...e.tags, ...e.refNames.map((r) => `ref ${r}`)].join(' ')).join('; ');
}

export function matchEntries(source: ImageSource, image: string): ImageEntry[] {
  const at = /^@(\d+)$/.exec(image);
  if (at) {
    const n = Number(at[1]);
    const entry = source.entries[n];
    if (!entry) throw usageError(`${source.where}: --image @${n}: only ${source.entries.length} image(s) in the input (@0 to @${source.entries.length - 1})`);
    return [entry];
  }
  const byRef = source.entries.filter((e) => e.refNames.includes(image));
  if (byRef.length) return byRef;
  const wanted = normaliseSelector(image);
  return wanted ? source.entries.filter((e) => e.tags.includes(wanted)) : [];
}

/** Picks images by --image (or all of them) and resolves --platform inside indexes. */
export async function selectImages(source: ImageSource, sel: Selection): Promise<SelectedImage[]> {
  let entries = source.entries;
  if (sel.image !== undefined) {
    entries = matchEntries(source, sel.image);
    if (entries.length === 0) throw usageError(`${source.where}: no image matches --image ${sel.image}; choices: ${choices(source)}`);
    if (entries.length > 1) throw usageError(`${source.where}: --image ${sel.image} is ambiguous; choices: ${choices(source)}`);
  }
  return Promise.all(
    entries.map(async (entry) => {
      const where = `${source.where}: ${entryLabel(entry)}`;
      const mediaType = entry.root.known?.()?.mediaType;
      if (mediaType !== undefined && !isManifestOrIndexType(mediaType)) {
        throw new TarpushError('input', `${where}: not an image manifest or index (media type ${mediaType})`);
      }
      return {
        entry,
        label: entryLabel(entry),
        content: sel.platform ? await pickPlatform(entry.root, sel.platform, where) : entry.root,
      };
    }),
  );
}

/** Exactly one image, or a usage error that lists the choices. */
export async function selectOne(source: ImageSource, sel: Selection): Promise<SelectedImage> {
  const selected = await selectImages(source, sel);
  if (selected.length !== 1) {
    throw usageError(`${source.where} holds ${selected.length} images; pick one with --image (choices: ${choices(source)})`);
  }
  return selected[0]!;
}

/** The platform of an image manifest, from its config. */
export async function manifestPlatform(content: Content): Promise<Platform | undefined> {
  if (content instanceof SynthesisedManifest) return platformOfConfig(parseConfig(await content.config.read(), 'config'));
  if (content instanceof DescribedContent) {
    const doc = await content.document();
    if (doc.kind !== 'manifest') return undefined;
    const children = await content.children();
    return platformOfConfig(parseConfig(await readContent(children[0]!), `${content.reader.where}: config ${doc.manifest.config.digest}`));
  }
  return undefined;
}

export async function pickPlatform(root: Content, want: Platform, where: string): Promise<Content> {
  const desc = await root.describe();
  if (!isIndexType(desc.mediaType)) {
    const have = await manifestPlatform(root);
    if (have && !platformMatches(want, have)) {
      throw new TarpushError('usage', `${where} is ${formatPlatform(have)}, not ${formatPlatform(want)}`);
    }
    return root;
  }
  const found = new Map<string, Content>();
  const seen: string[] = [];
  async function walk(node: Content): Promise<void> {
    for (const child of await node.children()) {
      const d = await child.describe();
      if (isIndexType(d.mediaType)) await walk(child);
      else if (isManifestType(d.mediaType)) {
        if (d.platform) seen.push(formatPlatform(d.platform));
        if (platformMatches(want, d.platform)) found.set(d.digest, child);
      }
    }
  }
  await walk(root);
  if (found.size === 1) return [...found.values()][0]!;
  const available = [...new Set(seen)].join(', ') || 'none listed';
  if (found.size === 0) throw usageError(`${where}: no image for platform ${formatPlatform(want)} (available: ${available})`);
  throw usageError(`${where}: ${found.size} different images match platform ${formatPlatform(want)}; give the variant (available: ${available})`);
}
