/**
 * tarpush as a library. The CLI (src/cli/) uses only what is exported here.
 */
export { ExitCode, TarpushError, inputError, usageError, isTarpushError, type ErrorKind } from './errors.js';

// The image model
export type { Content, BlobReader } from './image/content.js';
export { contentFromDescriptor, DescribedContent, readAll, readContent } from './image/content.js';
export type { Descriptor, Platform, ImageManifest, ImageIndex, ImageConfig } from './image/descriptor.js';
export { Annotation } from './image/descriptor.js';
export { parseDigest, sha256, verifyStream, BlobMismatchError, type Digest } from './image/digest.js';
export { MediaType, isIndexType, isManifestType, layerCompression } from './image/mediatypes.js';
export { parseDocument, serialiseManifest, serialiseIndex } from './image/manifest.js';
export { parsePlatform, platformMatches, formatPlatform } from './image/platform.js';
export type { Target } from './image/target.js';

// Readers
export { openTree, openTreeFromStream } from './archive/open.js';
export type { FileTree } from './archive/filetree.js';
export { installCleanupHandlers } from './archive/tempfiles.js';
export { openImageSource, type OpenSourceOptions } from './formats/open.js';
export type { ImageSource, ImageEntry, SourceFormat } from './formats/source.js';
export { selectImages, selectOne, pickPlatform, type Selection, type SelectedImage } from './formats/select.js';
export { summarise, type EntrySummary, type ManifestSummary } from './formats/inspect.js';
export type { SynthesisOptions } from './formats/synthesised.js';

// Writers and the copy between any source and any target
export { OciLayoutTarget } from './formats/oci-layout-writer.js';
export { ArchiveTarget, type ArchiveTargetOptions } from './formats/archive-writer.js';
export { Copier, copyImage, type CopyOptions, type CopyStats } from './copy.js';
export { installGracefulInterrupt, isInterrupting } from './interrupt.js';

// Registries
export { parseReference, formatReference, repositoryName, type Reference } from './registry/reference.js';
export { openRegistry, type RegistryOptions } from './registry/options.js';
export { RegistryTarget } from './registry/target.js';
export { RegistryReader, resolveRemote, type RemoteImage } from './registry/source.js';

// Verification
export { verifyImage, verifyImages, compareImages, type Comparison, type VerifyReport, type VerifyFinding } from './verify/index.js';

// Compression
export { createGzipStream, DEFAULT_GZIP_SETTINGS } from './compress/gzip.js';
export { CompressionCache } from './compress/cache.js';

// Progress
export type { Progress, ProgressReporter } from './progress/progress.js';
export { silentReporter } from './progress/progress.js';
export { createReporter, formatBytes } from './progress/reporter.js';
