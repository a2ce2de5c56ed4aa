import { DecompressionError } from '../archive/compression.js';
import { BlobMismatchError } from '../image/digest.js';

/**
 * The problem an error describes, without the file or registry name the error message starts
 * with (the report already says which blob it is about).
 */
export function describeFailure(e: unknown): string {
  if (e instanceof BlobMismatchError) {
    const { expected, actual } = e;
    if (actual.size !== expected.size) {
      return actual.size < expected.size
        ? `truncated: ${actual.size} bytes where ${expected.size} were expected`
        : `too long: more than the ${expected.size} bytes expected`;
    }
    return `content does not match its digest (it hashes to ${actual.digest})`;
  }
  if (e instanceof DecompressionError) return e.problem;
  if (isMissing(e)) return 'blob is missing';
  const message = e instanceof Error ? e.message : String(e);
  return message;
}

export function isMissing(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown };
  return err?.code === 'ENOENT' || (typeof err?.message === 'string' && /\bis missing\b|\bnot found\b/i.test(err.message));
}
