import type { FileTree } from '../archive/filetree.js';
import type { Content } from '../image/content.js';

/** How an image was stored in the input; shown by `load` and in JSON reports. */
export type SourceFormat =
  | 'docker-archive' //   legacy `docker save` (Docker <= 24, podman, skopeo)
  | 'docker-oci-archive' // Docker 25+ / containerd store: OCI layout plus manifest.json
  | 'crane-tarball' //     crane/kaniko: manifest.json pointing at gzipped <hex>.tar.gz layers
  | 'oci-archive' //       OCI layout in a tar, no manifest.json (buildx type=oci)
  | 'oci-layout'; //       OCI layout directory

/** One image (or index) an input holds. */
export interface ImageEntry {
  /** Position in the input, for `--image @N`. */
  position: number;
  /** Fully normalised tags (`docker.io/library/alpine:latest`) the input gives this image. */
  tags: string[];
  /** Layout ref names (`org.opencontainers.image.ref.name`), as written. */
  refNames: string[];
  format: SourceFormat;
  /** The manifest or index; for synthesised manifests its describe() may compress layers. */
  root: Content;
  /** True when tarpush builds the manifest itself (legacy and crane inputs). */
  synthesised: boolean;
}

export interface ImageSource {
  readonly where: string;
  readonly format: SourceFormat;
  readonly entries: ImageEntry[];
  /** The files the images were read from (verify checks layouts file by file). */
  readonly tree: FileTree;
  close(): Promise<void>;
}
