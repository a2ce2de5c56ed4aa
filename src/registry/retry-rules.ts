/** Retry rules shared by the client, blob downloads and blob uploads. */

/** Consecutive failures without progress after which a transfer gives up. */
export const MAX_TRANSFER_FAILURES = 5;

/** A request whose stream body was consumed before the registry asked for new authorization. */
export class AuthReplayNeeded extends Error {}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
