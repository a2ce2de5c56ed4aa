import { availableParallelism } from 'node:os';

/**
 * Runs at most `size` jobs at once. Layer hashing and decompression is CPU-bound, so a few at a
 * time keep every core busy without thrashing the page cache or holding many files open.
 */
export class Limiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number = defaultConcurrency()) {}

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      return await job();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

export function defaultConcurrency(): number {
  return Math.min(4, Math.max(2, availableParallelism()));
}
