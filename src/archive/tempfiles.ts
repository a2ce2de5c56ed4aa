import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';

/**
 * Every temp file or directory tarpush creates (decompression spools, compression spools, writer
 * temp files awaiting rename) is registered here, so nothing partial is left behind however the
 * process ends: on close (releaseTemp), on normal exit and on uncaught errors (the 'exit' event
 * fires for both), and on SIGINT/SIGTERM/SIGHUP (directly, or through the 'exit' of whoever
 * handles the signal).
 *
 * The exit path removes synchronously because 'exit' listeners cannot await.
 */

const registered = new Set<string>();
let installed = false;

const SIGNAL_EXIT_CODES: Partial<Record<NodeJS.Signals, number>> = {
  SIGINT: 130,
  SIGTERM: 143,
  SIGHUP: 129,
};

/**
 * Reserves and registers a unique path in `dir` (default os.tmpdir()); the caller creates the
 * file or directory. Creating it with flag 'wx' (or mkdir) guards against a clash.
 */
export function createTempPath(dir: string | undefined, prefix: string): string {
  installCleanupHandlers();
  const path = resolve(dir ?? tmpdir(), `${prefix}${process.pid}-${randomBytes(6).toString('hex')}`);
  registered.add(path);
  return path;
}

/** Removes a temp path now (file or directory, absent is fine) and stops tracking it. */
export async function releaseTemp(path: string): Promise<void> {
  // Unregistered only after a successful removal, so a failure here is retried at exit.
  await rm(path, { recursive: true, force: true });
  registered.delete(path);
}

/** Stops tracking a temp path that has been renamed into its final place. */
export function forgetTemp(path: string): void {
  registered.delete(path);
}

/** The paths currently registered (for tests and diagnostics). */
export function pendingTemps(): string[] {
  return [...registered];
}

/** Removes every registered path synchronously; never throws (it runs while exiting). */
export function removeAllTempsSync(): void {
  for (const path of registered) {
    try {
      rmSync(path, { recursive: true, force: true });
      registered.delete(path);
    } catch {
      // Best effort: the process is going away and has no one left to report to.
    }
  }
}

/**
 * Installs the exit and signal handlers once. createTempPath calls it, so no module that makes
 * temp files can forget. On a signal nobody else handles, temps are removed and the process
 * exits with 128+signal. When another listener handles the signal (the CLI's graceful interrupt,
 * which lets in-flight chunks finish from these very spool files), exiting is its job and temps
 * are left alone until the 'exit' handler removes them.
 */
export function installCleanupHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', removeAllTempsSync);
  // A monitor does not change Node's crash behaviour (a plain 'uncaughtException' listener would
  // swallow the crash); it just lets the removal happen before the stack trace is printed.
  process.on('uncaughtExceptionMonitor', removeAllTempsSync);
  for (const [signal, code] of Object.entries(SIGNAL_EXIT_CODES) as [NodeJS.Signals, number][]) {
    process.on(signal, () => {
      if (process.listenerCount(signal) > 1) return;
      removeAllTempsSync();
      process.exit(code);
    });
  }
}
