// HTTP/1.1 response parsing for meshd's upstream client, apart from any socket:
// fed Buffers, it calls back with the head, body bytes (subarrays of what it was
// fed, never copied) and the end of each response.

/** What a parser reports to; it may call expect() from onEnd and stop() from any callback. */
export interface ResponseEvents {
  onHead(status: number, reason: string, headers: string[]): void;
  onData(chunk: Buffer): void;
  /** `keepAlive`: the connection may carry another exchange. */
  onEnd(keepAlive: boolean): void;
  onError(message: string): void;
}

const CRLF2 = Buffer.from('\r\n\r\n');

const enum State { Idle, Head, Length, Chunk, ChunkData, ChunkEnd, Trailers, UntilClose, Dead }

export class ResponseParser {
  #state = State.Idle;
  #head = false;
  #remaining = 0;
  #keepAlive = true;
  #pending: Buffer | undefined;

  constructor(readonly events: ResponseEvents) {}

  get awaitingHead(): boolean {
    return this.#state === State.Head;
  }

  /** Awaits the response to a request with this method. */
  expect(method: string): void {
    this.#state = State.Head;
    this.#head = method === 'HEAD';
    this.#keepAlive = true;
    this.#pending = undefined;
  }

  /** Drops everything: no callback comes after this. */
  stop(): void {
    this.#state = State.Dead;
    this.#pending = undefined;
  }

  /** The peer closed; returns false when that cut a response short. */
  finish(): boolean {
    if (this.#state === State.UntilClose) {
      this.#end();
      return true;
    }
    return this.#state === State.Idle;
  }

  execute(chunk: Buffer): void {
    let buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = undefined;
    while (buf.length > 0 && this.#state !== State.Idle && this.#state !== State.Dead) {
      switch (this.#state) {
        case State.Head: {
          const end = buf.indexOf(CRLF2);
          if (end < 0) {
            if (buf.length > 65536) return void this.#error('response head too large');
            this.#pending = buf;
            return;
          }
          if (!this.#parseHead(buf.toString('latin1', 0, end))) return;
          buf = buf.subarray(end + 4);
          break;
        }
        case State.Length: {
          const n = Math.min(this.#remaining, buf.length);
          this.#remaining -= n;
          this.#deliver(buf.subarray(0, n));
          buf = buf.subarray(n);
          if (this.#remaining === 0) this.#end();
          break;
        }
        case State.Chunk: {
          const nl = buf.indexOf('\r\n');
          if (nl < 0) {
            if (buf.length > 1024) return void this.#error('bad chunk size line');
            this.#pending = buf;
            return;
          }
          const size = parseInt(buf.toString('latin1', 0, nl), 16);
          if (!Number.isFinite(size) || size < 0) return void this.#error('bad chunk size');
          buf = buf.subarray(nl + 2);
          if (size === 0) this.#state = State.Trailers;
          else {
            this.#remaining = size;
            this.#state = State.ChunkData;
          }
          break;
        }
        case State.ChunkData: {
          const n = Math.min(this.#remaining, buf.length);
          this.#remaining -= n;
          this.#deliver(buf.subarray(0, n));
          buf = buf.subarray(n);
          if (this.#remaining === 0) this.#state = State.ChunkEnd;
          break;
        }
        case State.ChunkEnd: {
          if (buf.length < 2) {
            this.#pending = buf;
            return;
          }
          buf = buf.subarray(2);
          this.#state = State.Chunk;
          break;
        }
        case State.Trailers: {
          // Trailers are dropped (hop-by-hop framing); the blank line ends the body.
          const nl = buf.indexOf('\r\n');
          if (nl < 0) {
            this.#pending = buf;
            return;
          }
          buf = buf.subarray(nl + 2);
          if (nl === 0) this.#end();
          break;
        }
        case State.UntilClose:
          this.#deliver(buf);
          buf = buf.subarray(buf.length);
          break;
      }
    }
    // Bytes nobody asked for: the connection cannot be trusted any more.
    if (buf.length > 0 && this.#state === State.Idle) this.#error('bytes after the response');
  }

  /** Parses the status line and headers; returns false when parsing stopped. */
  #parseHead(text: string): boolean {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]!);
    if (!m) return this.#error('malformed status line');
    const status = Number(m[2]);
    if (status >= 100 && status < 200) return true; // 100 Continue and friends: wait for the real head
    let length = -1;
    let chunked = false;
    let close = m[1] === '0';
    const headers: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) return this.#error('malformed header line');
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      switch (name.length) {
        case 10:
          if (name.toLowerCase() === 'connection') {
            const v = value.toLowerCase();
            close = v.includes('close') || (m[1] === '0' && !v.includes('keep-alive'));
          }
          break;
        case 14:
          if (name.toLowerCase() === 'content-length') length = Number(value);
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') chunked = value.toLowerCase().endsWith('chunked');
          break;
      }
      headers.push(name, value);
    }
    this.#keepAlive = !close;
    this.events.onHead(status, m[3] ?? '', headers);
    if (this.#state !== State.Head) return false;
    const noBody = this.#head || status === 204 || status === 304;
    if (noBody || (!chunked && length === 0)) {
      this.#end();
      return this.#live();
    }
    if (chunked) this.#state = State.Chunk;
    else if (length > 0) {
      this.#state = State.Length;
      this.#remaining = length;
    } else {
      this.#state = State.UntilClose;
      this.#keepAlive = false;
    }
    return true;
  }

  /** Callbacks may stop the parser; TypeScript's narrowing cannot see that. */
  #live(): boolean {
    return this.#state !== State.Dead;
  }

  #deliver(chunk: Buffer): void {
    if (chunk.length > 0) this.events.onData(chunk);
  }

  #end(): void {
    this.#state = State.Idle;
    this.events.onEnd(this.#keepAlive);
  }

  #error(message: string): false {
    this.#state = State.Dead;
    this.#pending = undefined;
    this.events.onError(message);
    return false;
  }
}
