import type { Readable } from 'node:stream';

/**
 * Reads a blob's (verified) stream in chunks for upload, and can go back: the last chunk read
 * is kept, so a chunk the registry did not confirm is replayed from memory; going back further
 * reopens the source and reads (and so re-verifies) up to the position. Memory stays bounded
 * by one chunk.
 */
export class SourceCursor {
  private stream?: Readable;
  private iterator?: AsyncIterator<Buffer>;
  /** Bytes pulled from the stream but not yet handed out. */
  private pending: Buffer = Buffer.alloc(0);
  /** Stream position just after `pending`. */
  private streamPos = 0;
  /** The last chunk handed out and where it started, for replay. */
  private held: Buffer = Buffer.alloc(0);
  private heldStart = 0;
  /** Next byte read() returns. */
  private pos = 0;
  private ended = false;
  /** How often the source was opened (for debug and tests). */
  opens = 0;

  constructor(private readonly open: () => Promise<Readable>) {}

  get position(): number {
    return this.pos;
  }

  private async reopen(): Promise<void> {
    this.close();
    this.stream = await this.open();
    this.opens++;
    this.iterator = this.stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    this.pending = Buffer.alloc(0);
    this.streamPos = 0;
    this.held = Buffer.alloc(0);
    this.heldStart = 0;
    this.pos = 0;
    this.ended = false;
  }

  /** Start of the bytes still available without reopening. */
  private get availableFrom(): number {
    return this.held.length > 0 ? this.heldStart : this.streamPos - this.pending.length;
  }

  /** Positions the cursor at `offset`, reading (and verifying) any bytes before it. */
  async seek(offset: number): Promise<void> {
    if (!this.stream || offset < this.availableFrom) await this.reopen();
    const streamNext = this.streamPos - this.pending.length; // first byte of pending
    if (offset <= streamNext) {
      this.pos = offset;
      return;
    }
    // Forward: drop held and skip through the stream.
    this.held = Buffer.alloc(0);
    this.pos = streamNext;
    await this.skip(offset - streamNext);
  }

  private async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.pending.length === 0 && !(await this.pull())) break;
      const take = Math.min(left, this.pending.length);
      this.pending = this.pending.subarray(take);
      left -= take;
      this.pos += take;
    }
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.iterator!.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.streamPos += chunk.length;
    return true;
  }

  /** The next `n` bytes (fewer only at the end of the source). */
  async read(n: number): Promise<Buffer> {
    if (!this.stream) await this.reopen();
    // `held` always ends where `pending` starts, so its tail from `pos` can be replayed.
    const inHeld = this.held.length > 0 && this.pos >= this.heldStart && this.pos < this.heldStart + this.held.length;
    const tail = inHeld ? this.held.subarray(this.pos - this.heldStart) : Buffer.alloc(0);
    let out: Buffer;
    if (tail.length >= n) {
      out = tail.subarray(0, n);
      this.held = tail;
    } else {
      const parts: Buffer[] = tail.length ? [tail] : [];
      let got = tail.length;
      while (got < n) {
        if (this.pending.length === 0 && !(await this.pull())) break;
        const take = Math.min(n - got, this.pending.length);
        parts.push(this.pending.subarray(0, take));
        this.pending = this.pending.subarray(take);
        got += take;
      }
      out = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      this.held = out;
    }
    this.heldStart = this.pos;
    this.pos += out.length;
    return out;
  }

  /**
   * Reads to the end of the source, so its verification (which reports at end of stream) has
   * run before the last bytes are committed. Returns the number of surplus bytes (0 when the
   * source had exactly what was read).
   */
  async finish(): Promise<number> {
    let extra = this.pending.length;
    this.pending = Buffer.alloc(0);
    while (await this.pull()) {
      extra += this.pending.length;
      this.pending = Buffer.alloc(0);
    }
    return extra;
  }

  close(): void {
    this.stream?.destroy();
    this.stream = undefined;
    this.iterator = undefined;
  }
}
