import { TarpushError } from './errors.js';

/**
 * Graceful Ctrl-C. The first SIGINT or SIGTERM asks running transfers to stop at the next chunk
 * boundary: a chunk the registry only half received makes many registries (the CNCF
 * distribution registry among them) cancel the whole upload session, while a session stopped
 * between chunks can be resumed by the next run. A second signal, or the grace period running
 * out, exits at once. Temp files are removed either way (archive/tempfiles.ts).
 */
let stopping = false;
let installed = false;

export function isInterrupting(): boolean {
  return stopping;
}

/** Throws the interrupted error when a stop was asked for; call it between units of work. */
export function checkInterrupted(where: string): void {
  if (stopping) throw new TarpushError('interrupted', `${where}: interrupted; run the same command again to resume`);
}

export function installGracefulInterrupt(notify: (message: string) => void, graceMs = 30_000): void {
  if (installed) return;
  installed = true;
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = signal === 'SIGTERM' ? 143 : 130;
    if (stopping) process.exit(code);
    stopping = true;
    notify(`${signal === 'SIGINT' ? 'Ctrl-C' : signal}: finishing the chunks in flight so a rerun can resume (press Ctrl-C again to stop now)`);
    setTimeout(() => process.exit(code), graceMs).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
