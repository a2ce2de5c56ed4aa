/**
 * Progress of one unit of work (one blob being uploaded, downloaded, compressed or hashed).
 * Implementations write to stderr only; the no-op one is used for --quiet and in the library.
 */
export interface Progress {
  /** Adds `bytes` to the amount done. */
  advance(bytes: number): void;
  /** Resets the amount done (a retry starting over, or a resume from `bytes`). */
  reset(bytes?: number): void;
  /** Marks the unit finished; `note` is shown beside it (e.g. "exists", "mounted"). */
  done(note?: string): void;
  fail(note?: string): void;
}

export interface ProgressReporter {
  /** Starts a unit: `id` is short (a digest prefix), `total` in bytes when known. */
  start(id: string, label: string, total?: number): Progress;
  /** A one-off line of information (stderr). */
  info(message: string): void;
  /** A --debug line (stderr; never containing secrets). */
  debug(message: string): void;
  /** Stops spinners/timers; call once at the end. */
  close(): void;
}

const noop: Progress = { advance() {}, reset() {}, done() {}, fail() {} };

export const silentReporter: ProgressReporter = {
  start: () => noop,
  info() {},
  debug() {},
  close() {},
};
