import { Readable } from 'node:stream';
import { BlobMismatchError, type Digest } from '../image/digest.js';

/**
 * Reads a blob's (verified) source stream for upload, one request body at a time, holding
 * nothing but the piece in hand: memory does not grow with chunk or blob size. Going back (to
 * the offset a registry confirmed after a failed chunk) reopens the source and reads up to the
 * offset, so skipped bytes are verified like every other byte.
 */
export class SourceCursor {
  private stream?: Readable;
  private iterator?: AsyncIterator<Buffer | Uint8Array>;
  /** Bytes pulled from the stream but not yet handed out. */
  private pending: Buffer = Buffer.alloc(0);
  /** Bytes handed out (to bodies, read() or skipping) since the source was opened. */
  private pos = 0;
  private ended = false;
  /** The body's pull in progress, which may still hand out bytes after its request failed. */
  private inflight: Promise<void> = Promise.resolve();
  /** The source's own error, to report in place of however a request carrying its bytes failed. */
  failure?: unknown;
  /** How often the source was opened (for debug and tests). */
  opens = 0;

  constructor(
    private readonly open: () => Promise<Readable>,
    private readonly expected: { digest: Digest; size: number },
    private readonly where: string,
  ) {}

  get position(): number {
    return this.pos;
  }

  private async reopen(): Promise<void> {
    this.close();
    this.stream = await this.open();
    this.opens++;
    this.iterator = this.stream[Symbol.asyncIterator]() as AsyncIterator<Buffer | Uint8Array>;
    this.pending = Buffer.alloc(0);
    this.pos = 0;
    this.ended = false;
    this.failure = undefined;
  }

  /** Up to `max` next bytes, or undefined at the end of the source. */
  private async take(max: number): Promise<Buffer | undefined> {
    if (this.pending.length === 0) {
      if (this.ended) return undefined;
      let r: IteratorResult<Buffer | Uint8Array>;
      try {
        r = await this.iterator!.next();
      } catch (e) {
        this.failure = e;
        throw e;
      }
      if (r.done) {
        this.ended = true;
        return undefined;
      }
      this.pending = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
    const out = this.pending.subarray(0, max);
    this.pending = this.pending.subarray(out.length);
    this.pos += out.length;
    return out;
  }

  private tooShort(): BlobMismatchError {
    const e = new BlobMismatchError(this.where, this.expected, { size: this.pos });
    this.failure = e;
    return e;
  }

  /** Positions the cursor at `offset`, reading (and verifying) the bytes before it. */
  async seek(offset: number): Promise<void> {
    await this.inflight;
    if (!this.stream || this.failure !== undefined || offset < this.pos) await this.reopen();
    while (this.pos < offset) {
      if (!(await this.take(offset - this.pos))) throw this.tooShort();
    }
  }

  /** The next `n` bytes as one buffer (fewer only at the end of the source): for small blobs. */
  async read(n: number): Promise<Buffer> {
    if (!this.stream) await this.reopen();
    const parts: Buffer[] = [];
    for (let got = 0, piece; got < n && (piece = await this.take(n - got)); got += piece.length) parts.push(piece);
    return Buffer.concat(parts);
  }

  /**
   * A request body of exactly the next `n` bytes, pulled from the source as the request sends
   * them. `sent` learns each piece as it leaves. The first piece is read before returning, so a
   * source that fails or ends at a chunk boundary costs no partial request.
   */
  async body(n: number, sent: (bytes: number) => void): Promise<Readable> {
    if (!this.stream) await this.reopen();
    let left = n;
    const next = async (): Promise<Buffer> => {
      const piece = await this.take(left);
      if (!piece) throw this.tooShort();
      left -= piece.length;
      return piece;
    };
    let first: Buffer | undefined = await next();
    const cursor = this;
    return new Readable({
      read() {
        const deliver = (piece: Buffer): void => {
          sent(piece.length);
          this.push(piece);
          if (left === 0) this.push(null);
        };
        if (first) {
          deliver(first);
          first = undefined;
          return;
        }
        cursor.inflight = next().then(
          (piece) => {
            if (!this.destroyed) deliver(piece);
          },
          (e: unknown) => {
            this.destroy(e as Error);
          },
        );
      },
    });
  }

  /**
   * Reads to the end of the source, so its verification (which reports at end of stream) has
   * run, and checks it held exactly the expected size: call before the last bytes are committed.
   */
  async finish(): Promise<void> {
    await this.inflight;
    if (!this.stream) await this.reopen();
    while (await this.take(Infinity));
    if (this.pos !== this.expected.size) throw new BlobMismatchError(this.where, this.expected, { size: this.pos });
  }

  close(): void {
    this.stream?.destroy();
    this.stream = undefined;
    this.iterator = undefined;
  }
}
