import { open, type FileHandle } from 'node:fs/promises';
import { TarpushError, inputError } from '../errors.js';

/**
 * Indexes a plain tar file by seeking from header to header: only the 512-byte headers (and the
 * bodies of pax and GNU long-name records) are read; entry data is skipped by offset arithmetic,
 * so indexing a 10 GiB image tarball reads a few kilobytes. Entries are then read by range.
 *
 * Understands ustar, GNU (long names 'L', long links 'K', base-256 sizes) and pax ('x' path,
 * linkpath, size; 'g' ignored). Names are normalised and unsafe names refuse the whole archive;
 * symlinks and hard links are resolved to the regular file they end at.
 */

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  /** Normalised name (see normaliseEntryName). */
  name: string;
  type: TarEntryType;
  /** Offset of the entry's header block (of its first extended header, if any). */
  headerOffset: number;
  /** Offset of the entry's data in the file. */
  offset: number;
  /** Data size in bytes (0 for links and directories). */
  size: number;
  /** Link target as written in the archive (symlinks: relative to the link's directory). */
  linkname?: string;
}

/** Why a name does not resolve to a regular file. */
export type Unresolved = { problem: string };

const BLOCK = 512;
/** Extended headers are metadata; anything larger is corrupt or hostile. */
const MAX_EXTENDED_HEADER = 1024 * 1024;
/** Linux's limit for symlink hops (ELOOP). */
const MAX_LINK_HOPS = 40;

/** The archive is not a tar at all (bad first header); open.ts words the message for the user. */
export class NotATarError extends TarpushError {
  constructor(
    where: string,
    readonly detail: string,
  ) {
    super('input', `${where}: not a tar archive or OCI layout directory (${detail})`);
    this.name = 'NotATarError';
  }
}

/**
 * Normalises an entry name: strips leading `./` (repeated), collapses `//` and `/./`, drops a
 * trailing `/`. Refuses absolute names and any `..` component, which could only be meant to
 * escape the archive. Returns '' for the archive root itself (`./`).
 */
export function normaliseEntryName(raw: string, where: string): string {
  if (raw.startsWith('/')) throw inputError(where, `unsafe entry name ${shown(raw)} (absolute path)`);
  const parts: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw inputError(where, `unsafe entry name ${shown(raw)} (path traversal)`);
    parts.push(part);
  }
  return parts.join('/');
}

export class TarIndex {
  private readonly resolved = new Map<string, TarEntry | Unresolved>();

  constructor(
    readonly where: string,
    /** The file the offsets refer to (the archive itself or its decompressed spool). */
    readonly path: string,
    readonly fileSize: number,
    /** Entries by normalised name, last one winning, in archive order of that last one. */
    readonly entries: ReadonlyMap<string, TarEntry>,
  ) {}

  /** Names that resolve to a regular file, in archive order. */
  files(): string[] {
    const out: string[] = [];
    for (const name of this.entries.keys()) {
      if ('offset' in this.resolve(name)) out.push(name);
    }
    return out;
  }

  /** The regular-file entry a name resolves to (following links), or undefined. */
  file(name: string): TarEntry | undefined {
    const r = this.resolve(name);
    return 'offset' in r ? r : undefined;
  }

  /**
   * Resolves a name to its regular-file entry, or says why it cannot be: absent, dangling or
   * escaping link, link cycle, or not a regular file. Lookup names may contain `..` as long as
   * they stay inside the archive.
   */
  resolve(name: string): TarEntry | Unresolved {
    let r = this.resolved.get(name);
    if (!r) {
      r = this.walk(name);
      if ('problem' in r) r = { problem: shown(r.problem) };
      this.resolved.set(name, r);
    }
    return r;
  }

  private walk(name: string): TarEntry | Unresolved {
    const direct = this.entries.get(name);
    if (direct?.type === 'file') return direct;
    let pending = name.split('/');
    let done: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (done.length === 0) return { problem: `${name} points outside the archive` };
        done.pop();
        continue;
      }
      const here = done.length > 0 ? `${done.join('/')}/${part}` : part;
      const entry = this.entries.get(here);
      if (entry?.type === 'symlink') {
        if (++hops > MAX_LINK_HOPS) return { problem: `${name}: too many levels of links (link cycle)` };
        const target = entry.linkname ?? '';
        if (target.startsWith('/')) {
          return { problem: `${name}: symlink ${here} -> ${target} points outside the archive (absolute target)` };
        }
        pending = [...target.split('/'), ...pending];
        continue;
      }
      if (entry?.type === 'hardlink' && pending.length === 0) {
        if (++hops > MAX_LINK_HOPS) return { problem: `${name}: too many levels of links (link cycle)` };
        // Hard link targets are archive-root-relative names.
        const target = entry.linkname ?? '';
        if (target.startsWith('/') || target.split('/').includes('..')) {
          return { problem: `${name}: hard link to ${target} points outside the archive` };
        }
        done = [];
        pending = target.split('/');
        continue;
      }
      if (pending.length > 0 && entry && entry.type !== 'dir') {
        return { problem: `${name}: ${here} is not a directory` };
      }
      done.push(part);
    }
    const finalName = done.join('/');
    const entry = this.entries.get(finalName);
    if (!entry) {
      return { problem: finalName === name ? `${name}: no such file in the archive` : `${name}: link target ${finalName} does not exist in the archive` };
    }
    if (entry.type !== 'file') return { problem: `${name}: not a regular file (${entry.type})` };
    return entry;
  }
}

/** Reads blocks through a small window, since headers of small entries sit close together. */
class BlockReader {
  private window = Buffer.alloc(64 * 1024);
  private windowStart = 0;
  private windowLength = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly fileSize: number,
  ) {}

  /** Up to `length` bytes at `position` (fewer at the end of the file). The result is a copy. */
  async read(position: number, length: number): Promise<Buffer> {
    const end = Math.min(position + length, this.fileSize);
    if (end <= position) return Buffer.alloc(0);
    if (length > this.window.length) return this.readDirect(position, end - position);
    if (position < this.windowStart || end > this.windowStart + this.windowLength) {
      this.windowStart = position;
      this.windowLength = await this.fill(this.window, position, Math.min(this.window.length, this.fileSize - position));
    }
    const from = position - this.windowStart;
    return Buffer.from(this.window.subarray(from, Math.min(from + (end - position), this.windowLength)));
  }

  private async readDirect(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    const n = await this.fill(buf, position, length);
    return buf.subarray(0, n);
  }

  private async fill(buf: Buffer, position: number, length: number): Promise<number> {
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got;
  }
}

interface Extended {
  path?: string;
  linkpath?: string;
  size?: number;
  /** Where the first extended header of the pending entry started. */
  start?: number;
}

/** Indexes the tar at `path`; `where` is what messages call it (the user's path, not a spool). */
export async function indexTarFile(path: string, where: string): Promise<TarIndex> {
  const fh = await open(path, 'r');
  try {
    const fileSize = (await fh.stat()).size;
    const entries = await readEntries(new BlockReader(fh, fileSize), fileSize, where);
    return new TarIndex(where, path, fileSize, entries);
  } finally {
    await fh.close();
  }
}

async function readEntries(reader: BlockReader, fileSize: number, where: string): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  let pos = 0;
  let first = true;
  let ext: Extended = {};
  for (;;) {
    if (pos >= fileSize) {
      if (first) throw new NotATarError(where, 'no tar header');
      if (ext.start !== undefined) {
        throw inputError(where, `truncated: extended header at offset ${ext.start} is not followed by an entry`);
      }
      break;
    }
    const header = await reader.read(pos, BLOCK);
    if (header.length < BLOCK) {
      if (first) throw new NotATarError(where, `too short for a tar header: ${fileSize} bytes`);
      throw inputError(where, `truncated: tar header at offset ${pos} is incomplete (the file ends after ${header.length} of its 512 bytes)`);
    }
    if (isZero(header)) {
      // End of archive: two zero blocks, or one followed by the end of the file (or by padding).
      const next = await reader.read(pos + BLOCK, BLOCK);
      if (isZero(next)) break;
      if (first) throw new NotATarError(where, 'a zero block followed by data');
      throw inputError(where, `corrupt tar header at offset ${pos + BLOCK} (data after an end-of-archive block)`);
    }
    if (!checksumMatches(header)) {
      if (first) throw new NotATarError(where, 'no valid tar header at the start');
      throw inputError(where, `corrupt tar header at offset ${pos} (checksum mismatch)`);
    }
    first = false;
    const h = parseHeader(header, pos, where);
    const bodyOffset = pos + BLOCK;

    if (h.typeflag === 'x' || h.typeflag === 'g' || h.typeflag === 'L' || h.typeflag === 'K') {
      if (h.typeflag !== 'g') {
        ext.start ??= pos;
        if (h.size > MAX_EXTENDED_HEADER) {
          throw inputError(where, `corrupt tar header at offset ${pos} (extended header of ${h.size} bytes)`);
        }
        const body = await reader.read(bodyOffset, h.size);
        if (body.length < h.size) {
          throw inputError(where, `truncated: extended header at offset ${pos} needs ${h.size - body.length} bytes beyond the end of the file`);
        }
        if (h.typeflag === 'x') Object.assign(ext, parsePax(body, pos, where));
        else if (h.typeflag === 'L') ext.path = cString(body);
        else ext.linkpath = cString(body);
      }
      pos = bodyOffset + roundUp(h.size);
      continue;
    }

    const rawName = ext.path ?? h.name;
    const linkname = ext.linkpath ?? h.linkname;
    const size = ext.size ?? h.size;
    const type = entryType(h.typeflag, rawName);
    // Go's archive/tar: these types never carry data, whatever their size field says.
    const dataSize = HEADER_ONLY_TYPES.has(h.typeflag) ? 0 : size;
    const name = normaliseEntryName(rawName, where);
    if (bodyOffset + dataSize > fileSize) {
      throw inputError(where, `truncated: entry ${shown(name || rawName)} needs ${bodyOffset + dataSize - fileSize} bytes beyond the end of the file`);
    }
    if (name !== '') {
      const entry: TarEntry = {
        name,
        type,
        headerOffset: ext.start ?? pos,
        offset: bodyOffset,
        size: type === 'file' ? dataSize : 0,
      };
      if (type === 'symlink') entry.linkname = linkname;
      if (type === 'hardlink') entry.linkname = normaliseLinkTarget(linkname);
      // The last entry of a name wins, and takes that later place in archive order.
      entries.delete(name);
      entries.set(name, entry);
    }
    ext = {};
    pos = bodyOffset + roundUp(dataSize);
  }
  return entries;
}

const HEADER_ONLY_TYPES = new Set(['1', '2', '3', '4', '5', '6']);

function entryType(typeflag: string, rawName: string): TarEntryType {
  switch (typeflag) {
    case '0':
    case '\0':
    case '7':
      // Pre-POSIX archives mark directories only by a trailing slash.
      return rawName.endsWith('/') ? 'dir' : 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '5':
    case 'D':
      return 'dir';
    default:
      return 'other';
  }
}

/** Hard link targets get the same clean-up as names; unsafe ones are kept as-is to be refused on lookup. */
function normaliseLinkTarget(target: string): string {
  if (target.startsWith('/') || target.split('/').includes('..')) return target;
  return target
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

interface Header {
  name: string;
  linkname: string;
  size: number;
  typeflag: string;
}

function parseHeader(block: Buffer, pos: number, where: string): Header {
  const typeflag = String.fromCharCode(block[156]!);
  let name = cString(block.subarray(0, 100));
  // POSIX ustar splits long names into prefix + name; GNU ("ustar  ") uses that space for other
  // fields, so the prefix counts only with the POSIX magic.
  if (block.subarray(257, 263).toString('latin1') === 'ustar\0') {
    const prefix = cString(block.subarray(345, 500));
    if (prefix) name = `${prefix}/${name}`;
  }
  const size = parseNumeric(block.subarray(124, 136));
  if (size === undefined) throw inputError(where, `corrupt tar header at offset ${pos} (invalid size field)`);
  return { name, linkname: cString(block.subarray(157, 257)), size, typeflag };
}

/** Octal (NUL/space padded) or GNU base-256 (high bit set) numeric field; undefined if invalid. */
function parseNumeric(field: Buffer): number | undefined {
  if (field[0]! & 0x80) {
    if (field[0] === 0xff) return undefined; // negative
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) {
      value = value * 256 + field[i]!;
      if (value > Number.MAX_SAFE_INTEGER) return undefined;
    }
    return value;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ \0]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  const value = parseInt(text, 8);
  return Number.isSafeInteger(value) ? value : undefined;
}

function checksumMatches(block: Buffer): boolean {
  const stored = parseNumeric(block.subarray(148, 156));
  if (stored === undefined) return false;
  // The checksum is computed with its own field as spaces; historic tars summed signed bytes.
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const b = block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function parsePax(body: Buffer, pos: number, where: string): Extended {
  const out: Extended = {};
  let i = 0;
  while (i < body.length) {
    if (body[i] === 0) break; // padding some writers leave
    const space = body.indexOf(0x20, i);
    const length = space > i ? Number(body.subarray(i, space).toString('latin1')) : NaN;
    if (!Number.isSafeInteger(length) || length <= 0 || i + length > body.length || body[i + length - 1] !== 0x0a) {
      throw inputError(where, `corrupt pax header at offset ${pos}`);
    }
    const record = body.subarray(space + 1, i + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq < 0) throw inputError(where, `corrupt pax header at offset ${pos}`);
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    // An empty value deletes a key; for these keys that just means "use the ustar field".
    if (key === 'path' && value !== '') out.path = value;
    else if (key === 'linkpath' && value !== '') out.linkpath = value;
    else if (key === 'size' && value !== '') {
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
        throw inputError(where, `corrupt pax header at offset ${pos} (invalid size ${value})`);
      }
      out.size = Number(value);
    }
    i += length;
  }
  return out;
}

/**
 * Entry names are attacker-controlled bytes; messages must stay one line, so names with control
 * characters are shown JSON-escaped.
 */
export function shown(text: string): string {
  return /[\u0000-\u001f\u007f]/.test(text) ? JSON.stringify(text) : text;
}

function cString(buf: Buffer): string {
  const nul = buf.indexOf(0);
  return buf.subarray(0, nul < 0 ? buf.length : nul).toString('utf8');
}

function isZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

function roundUp(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}
