import { DescribedContent, readContent, type Content } from '../image/content.js';
import { LayoutBlobReader } from './oci-layout.js';
import type { Descriptor } from '../image/descriptor.js';
import { parseConfig, platformOfConfig } from '../image/manifest.js';
import { isIndexType, isManifestType } from '../image/mediatypes.js';
import { formatPlatform } from '../image/platform.js';
import type { ImageEntry } from './source.js';

/** What `load` shows of one image manifest. */
export interface ManifestSummary {
  digest: string;
  mediaType: string;
  platform: string;
  config: string;
  layers: number;
  /** Sum of the layer sizes as pushed (compressed). */
  size: number;
  layerSizes: number[];
}

export interface EntrySummary {
  position: number;
  tags: string[];
  refNames: string[];
  format: string;
  synthesised: boolean;
  digest: string;
  mediaType: string;
  /** One per image manifest: the image itself, or each platform of an index. */
  manifests: ManifestSummary[];
}

async function summariseManifest(node: Content, desc: Descriptor): Promise<ManifestSummary> {
  const children = await node.children();
  const [config, ...layers] = children;
  const configDesc = await config!.describe();
  const layerDescs = await Promise.all(layers.map((l) => l.describe()));
  // A listing reads no layer, but a layer that is missing or of the wrong size is worth knowing.
  for (const l of layers) if (l instanceof DescribedContent && l.reader instanceof LayoutBlobReader) l.reader.checkPresent(l.descriptor);
  let platform = formatPlatform(desc.platform);
  if (!platform && /config|json/.test(configDesc.mediaType)) {
    try {
      platform = formatPlatform(platformOfConfig(parseConfig(await readContent(config!), configDesc.digest)));
    } catch {
      platform = ''; // artifacts and odd configs: not an error for a listing
    }
  }
  return {
    digest: desc.digest,
    mediaType: desc.mediaType,
    platform,
    config: configDesc.digest,
    layers: layerDescs.length,
    size: layerDescs.reduce((s, d) => s + d.size, 0),
    layerSizes: layerDescs.map((d) => d.size),
  };
}

export async function summarise(entry: ImageEntry, root: Content = entry.root): Promise<EntrySummary> {
  const manifests: ManifestSummary[] = [];
  async function walk(node: Content, desc: Descriptor): Promise<void> {
    if (isIndexType(desc.mediaType)) {
      for (const child of await node.children()) await walk(child, await child.describe());
    } else if (isManifestType(desc.mediaType)) {
      manifests.push(await summariseManifest(node, desc));
    }
  }
  // Children first: a synthesised manifest's own descriptor needs its layers described anyway.
  const rootDesc = isIndexType(root.known?.()?.mediaType) ? await root.describe() : undefined;
  if (rootDesc) await walk(root, rootDesc);
  const desc = await root.describe();
  if (!rootDesc) await walk(root, desc);
  return {
    position: entry.position,
    tags: entry.tags,
    refNames: entry.refNames,
    format: entry.format,
    synthesised: entry.synthesised,
    digest: desc.digest,
    mediaType: desc.mediaType,
    manifests,
  };
}
