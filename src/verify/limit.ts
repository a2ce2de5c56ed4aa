import { availableParallelism } from 'node:os';

export { Limiter } from '../limit.js';

/** Layer hashing and decompression are CPU-bound: a few at a time keep every core busy. */
export function defaultConcurrency(): number {
  return Math.min(4, Math.max(2, availableParallelism()));
}
