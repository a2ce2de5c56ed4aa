import { parentPort } from 'node:worker_threads';
import { deflateBlock, deflateBound } from './deflate-block.js';

/** Message protocol between the pool and its workers (see pool.ts). */
export interface BlockTask {
  id: number;
  block: ArrayBuffer;
  blockLength: number;
  dictionary: ArrayBuffer | null;
  dictionaryLength: number;
  final: boolean;
  level: number;
  storeIncompressible: boolean;
}

/** Input buffers travel back with the result, so the sender can reuse them instead of allocating. */
export type BlockResult =
  | { id: number; ok: true; output: ArrayBuffer; block: ArrayBuffer; dictionary: ArrayBuffer | null }
  | { id: number; ok: false; message: string };

let scratch = new Uint8Array(0);

const port = parentPort;
if (port) {
  port.on('message', (task: BlockTask) => {
    try {
      const bound = deflateBound(task.blockLength);
      if (scratch.length < bound) scratch = new Uint8Array(bound);
      const written = deflateBlock(
        new Uint8Array(task.block, 0, task.blockLength),
        task.dictionary ? new Uint8Array(task.dictionary, 0, task.dictionaryLength) : undefined,
        task.final,
        task.level,
        scratch,
        task.storeIncompressible,
      );
      const output = written.slice().buffer;
      const reply: BlockResult = { id: task.id, ok: true, output, block: task.block, dictionary: task.dictionary };
      const transfer = [output, task.block];
      if (task.dictionary) transfer.push(task.dictionary);
      port.postMessage(reply, transfer);
    } catch (e) {
      const reply: BlockResult = { id: task.id, ok: false, message: (e as Error).message };
      port.postMessage(reply);
    }
  });
}
