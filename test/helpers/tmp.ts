/**
 * Temp dirs for tests, removed when the test ends (or when the process exits,
 * for dirs made outside a test).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** The part of node:test's TestContext (or SuiteContext hooks) this needs. */
export interface AfterHook {
  after(fn: () => unknown): void;
}

const leftovers = new Set<string>();
let exitHookInstalled = false;

/**
 * Creates a fresh directory under the system temp dir. With a test context it
 * is removed in that test's `after`; without one, at process exit.
 */
export function tempDir(t?: AfterHook, prefix = 'tarpush-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (t) {
    t.after(() => rm(dir, { recursive: true, force: true }));
  } else {
    leftovers.add(dir);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const d of leftovers) {
          try { rmSync(d, { recursive: true, force: true }); } catch { /* exiting anyway */ }
        }
      });
    }
  }
  return dir;
}
