/**
 * Tar fixtures for the archive tests: well-formed archives packed with tar-stream, plus raw
 * header blocks for the shapes tar-stream does not write (GNU long names, base-256 sizes, bad
 * checksums, hostile names).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';

export const HERE = new URL('.', import.meta.url).pathname;
/** /work/main (tests run from dist/test/archive). */
export const REPO = join(HERE, '..', '..', '..');
export const TESTDATA = join(REPO, 'testdata');

export interface PackEntry {
  name: string;
  data?: string | Buffer;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  linkname?: string;
}

export async function packTar(entries: PackEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const data = type === 'file' ? (typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0))) : Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      pack.entry({ name: e.name, type, linkname: e.linkname, mtime: new Date(0), mode: 0o644 }, data, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

export interface RawHeader {
  name: string;
  /** Typeflag character ('0' file, '1' hard link, '2' symlink, '5' dir, 'L', 'K', 'x', 'g'). */
  type?: string;
  size?: number;
  linkname?: string;
  /** 'posix' writes "ustar\0" + "00", 'gnu' writes "ustar  \0", 'v7' leaves it empty. */
  format?: 'posix' | 'gnu' | 'v7';
  prefix?: string;
  /** Write the size as GNU base-256 even when it fits in octal. */
  base256?: boolean;
  /** Corrupt the checksum. */
  badChecksum?: boolean;
}

export function rawHeader(h: RawHeader): Buffer {
  const b = Buffer.alloc(512);
  b.write(h.name, 0, 100, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  const size = h.size ?? 0;
  if (h.base256 || size > 0o77777777777) {
    b[124] = 0x80;
    let v = size;
    for (let i = 135; i > 124; i--) {
      b[i] = v % 256;
      v = Math.floor(v / 256);
    }
  } else {
    b.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  }
  b.write('00000000000\0', 136, 'latin1');
  b.write(h.type ?? '0', 156, 'latin1');
  if (h.linkname) b.write(h.linkname, 157, 100, 'utf8');
  const format = h.format ?? 'posix';
  if (format === 'posix') {
    b.write('ustar\0', 257, 'latin1');
    b.write('00', 263, 'latin1');
    if (h.prefix) b.write(h.prefix, 345, 155, 'utf8');
  } else if (format === 'gnu') {
    b.write('ustar  \0', 257, 'latin1');
  }
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  if (h.badChecksum) sum += 1;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

/** Data padded to whole blocks. */
export function body(data: string | Buffer): Buffer {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.concat([buf, Buffer.alloc((512 - (buf.length % 512)) % 512)]);
}

/** A header and its padded body. */
export function rawEntry(h: RawHeader, data: string | Buffer = ''): Buffer[] {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  return [rawHeader({ ...h, size: h.size ?? buf.length }), body(buf)];
}

/** A pax record: "<len> key=value\n" where len counts the whole record in bytes. */
export function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(rest) + 1;
  while (String(len).length + Buffer.byteLength(rest) !== len) len = String(len).length + Buffer.byteLength(rest);
  return `${len}${rest}`;
}

export const END = Buffer.alloc(1024);

export function tempDir(prefix = 'tarpush-archive-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function listDir(dir: string): string[] {
  return readdirSync(dir);
}

/** Runs a compressor CLI (gzip, zstd, xz, bzip2) on a buffer. */
export function compressWith(tool: 'gzip' | 'zstd' | 'xz' | 'bzip2', input: Buffer, args: string[] = []): Buffer {
  const r = spawnSync(tool, ['-c', ...args], { input, maxBuffer: 1024 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${tool} failed: ${r.stderr.toString()}`);
  return r.stdout;
}
