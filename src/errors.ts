/**
 * One error type for everything a user can cause or meet. The CLI prints `message` as a single
 * line and exits with `exitCode`; the stack is shown only with --debug.
 */
export const ExitCode = {
  ok: 0,
  /** verify found a problem, or a pushed digest differs from the local one */
  failed: 1,
  usage: 2,
  /** the input file, layout or archive is missing, unreadable or not a valid image */
  input: 3,
  /** connection refused, DNS, TLS, timeouts, retries exhausted */
  network: 4,
  /** credentials missing or refused */
  auth: 5,
  /** the registry answered with an error (DENIED, NAME_UNKNOWN, MANIFEST_INVALID, ...) */
  registry: 6,
  /** a bug in tarpush */
  internal: 70,
  interrupted: 130,
} as const;

export type ErrorKind = Exclude<keyof typeof ExitCode, 'ok'>;

export class TarpushError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TarpushError';
    this.kind = kind;
  }
  get exitCode(): number {
    return ExitCode[this.kind];
  }
}

/** An input problem, always naming the file (and the entry inside it, when there is one). */
export function inputError(file: string, problem: string, cause?: unknown): TarpushError {
  return new TarpushError('input', `${file}: ${problem}`, { cause });
}

export function usageError(problem: string): TarpushError {
  return new TarpushError('usage', problem);
}

export function isTarpushError(e: unknown): e is TarpushError {
  return e instanceof TarpushError;
}
