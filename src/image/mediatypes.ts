/** Every media type tarpush knows, and the one place that classifies them. */
export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociNondistLayer: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociNondistLayerGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociNondistLayerZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerZstd: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);

export function isIndexType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && INDEX_TYPES.has(mediaType);
}

export function isManifestType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && MANIFEST_TYPES.has(mediaType);
}

/** Manifests and indexes: the JSON documents a registry stores under /manifests/. */
export function isManifestOrIndexType(mediaType: string | undefined): boolean {
  return isIndexType(mediaType) || isManifestType(mediaType);
}

export type LayerCompression = 'gzip' | 'zstd' | 'none';

/**
 * The compression a layer media type declares, or undefined for a type that is not a known
 * layer type (artifacts, custom types) — callers then sniff the bytes.
 */
export function layerCompression(mediaType: string): LayerCompression | undefined {
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.tar.gzip') || mediaType === 'application/tar+gzip') {
    return 'gzip';
  }
  if (mediaType.endsWith('+zstd') || mediaType.endsWith('.tar.zstd')) return 'zstd';
  if (mediaType.endsWith('.tar') || mediaType === 'application/x-tar') return 'none';
  return undefined;
}

export type ManifestFormat = 'docker' | 'oci';

export function layerMediaType(format: ManifestFormat, compression: LayerCompression): string {
  if (format === 'docker') {
    return { gzip: MediaType.dockerLayerGzip, zstd: MediaType.dockerLayerZstd, none: MediaType.dockerLayer }[compression];
  }
  return { gzip: MediaType.ociLayerGzip, zstd: MediaType.ociLayerZstd, none: MediaType.ociLayer }[compression];
}
