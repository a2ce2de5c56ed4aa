import type { Readable } from 'node:stream';

/**
 * A read-only tree of named files: an image tarball (entries indexed by offset in one pass, then
 * read by ranged reads) or a directory (an OCI layout). Format readers see only this, so a
 * layout in a directory and the same layout in a tar are read by the same code.
 *
 * Names are normalised: no leading `./` or `/`, no `..` (archives with such names are refused
 * when opened), `/` separators, no trailing slash. Links are resolved: a symlinked or hard-linked
 * entry reads as its target's bytes.
 */
export interface FileTree {
  /** Where the tree came from, for messages: the path the user gave (or `-` for stdin). */
  readonly where: string;
  readonly kind: 'tar' | 'directory';
  /** Whole-file compression of the archive as it was given (gzip, zstd, xz) or 'none'. */
  readonly compression: 'none' | 'gzip' | 'zstd' | 'xz';
  /** Regular files (after link resolution), in archive order. */
  files(): string[];
  has(name: string): boolean;
  /** Size in bytes of a regular file (after link resolution); undefined when absent. */
  size(name: string): number | undefined;
  /** Streams the file's bytes (optionally a byte range [start, end) of it). */
  open(name: string, range?: { start: number; end: number }): Readable;
  /** Reads a small file whole (refuses files larger than `limit`). */
  read(name: string, limit?: number): Promise<Buffer>;
  /** Releases file handles and removes any spool file. Idempotent. */
  close(): Promise<void>;
}

export interface OpenTreeOptions {
  /** Where to put the decompressed spool of a compressed archive or stdin (default os.tmpdir()). */
  tmpdir?: string;
}
