// HTTP/1.1 response parsing for meshd's upstream client, apart from any socket:
// fed Buffers, it calls back with the head, body bytes (subarrays of what it was
// fed, never copied) and the end of each response. Strict where RFC 9112 lets a
// recipient choose: a response whose framing two parsers could read differently
// is an error, never a guess, since a guess is how responses get mixed up.
// A head is found with one indexOf and checked with two regular expressions
// (status line, all field lines at once); body bytes are never looped over in JS.

/** What a parser reports to; it may call expect() from onEnd and stop() from any callback. */
export interface ResponseEvents {
  onHead(status: number, reason: string, headers: string[]): void;
  onData(chunk: Buffer): void;
  /** `keepAlive`: the connection may carry another exchange (no bytes followed this response). */
  onEnd(keepAlive: boolean): void;
  onError(message: string): void;
}

/** Head (and trailer section) size limit, status line and blank line included. */
const MAX_HEAD = 65536;
/** A chunk-size line with its extensions. */
const MAX_CHUNK_LINE = 4096;

const CRLF2 = Buffer.from('\r\n\r\n');
const CR = 13;
const LF = 10;

// RFC 9112 §4: HTTP-version SP status-code SP [reason-phrase]; a missing SP
// before an empty reason is common and harmless. Status codes are 100-599 (RFC 9110 §15).
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
// RFC 9112 §5: field-name ":" OWS field-value OWS; a name is a token (so no
// whitespace before the colon, no obs-fold), a value has no control characters.
const FIELD_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;
/** The field lines of a head, each with the CRLF before it. */
const FIELDS = /^(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*)*$/;
const DIGITS = /^\d+$/;
// RFC 9112 §7.1: chunk-size [chunk-ext] CRLF, chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
// At most 16 hex digits; whether the value is safe is checked after.
const CHUNK_LINE = /^([0-9A-Fa-f]{1,16})(?:[\t ]*;[\t ]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[\t ]*=[\t ]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t !#-[\]-~\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)*$/;

const enum State { Idle, Head, Length, ChunkSize, ChunkData, ChunkEnd, Trailers, UntilClose, Dead }

/** Where in `chunk` the head that `pending` began ends (after its blank line), or 0 if not in it. */
function headEnd(pending: Buffer, chunk: Buffer): number {
  // The blank line's CRLFCRLF may straddle the two.
  for (let k = Math.min(3, pending.length); k > 0; k--) {
    if (pending.subarray(pending.length - k).equals(CRLF2.subarray(0, k)) && chunk.subarray(0, 4 - k).equals(CRLF2.subarray(k))) return 4 - k;
  }
  const i = chunk.indexOf(CRLF2);
  return i < 0 ? 0 : i + 4;
}

/** Strips OWS (SP, HTAB) only: String.trim() would also take obs-text such as NBSP. */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

export class ResponseParser {
  #state = State.Idle;
  #pending: Buffer | undefined;
  #remaining = 0;
  /** Bytes of the trailer section so far. */
  #size = 0;
  /** Bytes of a partial head already checked for bare LFs. */
  #scanned = 0;
  #isHead = false;
  // The head being read.
  #headers: string[] = [];
  #length = -1;
  #te = false;
  #chunked = false;
  #close = false;
  #keepAliveToken = false;
  /** The response being read leaves the connection fit for another exchange. */
  #keepAlive = false;

  constructor(readonly events: ResponseEvents) {}

  get awaitingHead(): boolean {
    return this.#state === State.Head;
  }

  /** Awaits the response to a request with this method. */
  expect(method: string): void {
    this.#isHead = method === 'HEAD';
    this.#pending = undefined;
    this.#newHead();
  }

  /** Drops everything: no callback comes after this. */
  stop(): void {
    this.#state = State.Dead;
    this.#pending = undefined;
  }

  /** The peer closed. Returns false when that cut a response short. */
  finish(): boolean {
    if (this.#state === State.UntilClose) {
      this.#state = State.Idle;
      this.events.onEnd(false);
      return true;
    }
    return this.#state === State.Idle || this.#state === State.Dead;
  }

  execute(chunk: Buffer): void {
    const pending = this.#pending;
    if (!pending) return this.#run(chunk, 0);
    this.#pending = undefined;
    // Join only what completes the pending head or line, so body bytes after it are not copied.
    const end = this.#state === State.Head ? headEnd(pending, chunk) : chunk.indexOf(LF) + 1;
    if (end <= 0 || end === chunk.length) return this.#run(Buffer.concat([pending, chunk]), 0);
    this.#run(Buffer.concat([pending, chunk.subarray(0, end)]), chunk.length - end);
    if (this.#state !== State.Dead) this.execute(chunk.subarray(end));
  }

  /** Parses `buf`; `more`: bytes of this read that follow it (they make a response that ends here not reusable). */
  #run(buf: Buffer, more: number): void {
    let at = 0;
    while (at < buf.length) {
      switch (this.#state) {
        case State.Head: {
          const end = buf.indexOf(CRLF2, at);
          if ((end < 0 ? buf.length : end + 4) - at > MAX_HEAD) return void this.#error('response head too large');
          if (end < 0) {
            // Not whole yet: a bare LF would otherwise only show once the blank line came, if ever.
            if (this.#bareLf(buf, at, at + this.#scanned)) return void this.#error('bare LF');
            this.#scanned = buf.length - at;
            this.#pending = buf.subarray(at);
            return;
          }
          const text = buf.toString('latin1', at, end);
          at = end + 4;
          if (!this.#head(text, buf.length - at + more)) return;
          break;
        }
        case State.Trailers: {
          const lf = buf.indexOf(LF, at);
          const size = this.#size + (lf < 0 ? buf.length : lf + 1) - at;
          if (size > MAX_HEAD) return void this.#error('trailers too large');
          if (lf < 0) {
            this.#pending = buf.subarray(at);
            return;
          }
          if (lf === at || buf[lf - 1] !== CR) return void this.#error('bare LF');
          this.#size = size;
          const start = at;
          at = lf + 1;
          // Trailers are checked and dropped (meshd re-frames the body); the blank line ends the body.
          if (lf - 1 === start) this.#end(buf.length - at + more);
          else if (!FIELD_LINE.test(buf.toString('latin1', start, lf - 1))) return void this.#error('malformed trailer line');
          break;
        }
        case State.Length:
        case State.ChunkData: {
          const n = Math.min(this.#remaining, buf.length - at);
          this.#remaining -= n;
          const data = buf.subarray(at, at + n);
          at += n;
          this.events.onData(data);
          if (!this.#live() || this.#remaining > 0) break;
          if (this.#state === State.Length) this.#end(buf.length - at + more);
          else this.#state = State.ChunkEnd;
          break;
        }
        case State.ChunkSize: {
          const lf = buf.indexOf(LF, at);
          if ((lf < 0 ? buf.length : lf) - at > MAX_CHUNK_LINE) return void this.#error('chunk size line too long');
          if (lf < 0) {
            this.#pending = buf.subarray(at);
            return;
          }
          if (lf === at || buf[lf - 1] !== CR) return void this.#error('bare LF');
          const m = CHUNK_LINE.exec(buf.toString('latin1', at, lf - 1));
          const size = m ? parseInt(m[1]!, 16) : NaN;
          if (!Number.isSafeInteger(size)) return void this.#error('bad chunk size');
          at = lf + 1;
          if (size === 0) {
            this.#state = State.Trailers;
            this.#size = 0;
          } else {
            this.#remaining = size;
            this.#state = State.ChunkData;
          }
          break;
        }
        case State.ChunkEnd: {
          // The CRLF after chunk data, checked byte by byte: it may be split across reads.
          if (buf[at] !== CR || (at + 1 < buf.length && buf[at + 1] !== LF)) return void this.#error('no CRLF after chunk data');
          if (at + 1 === buf.length) {
            this.#pending = buf.subarray(at);
            return;
          }
          at += 2;
          this.#state = State.ChunkSize;
          break;
        }
        case State.UntilClose: {
          const data = at === 0 ? buf : buf.subarray(at);
          at = buf.length;
          this.events.onData(data);
          break;
        }
        case State.Idle:
          // Bytes nobody asked for: the connection cannot be trusted any more.
          return void this.#error('bytes while no response was due');
        case State.Dead:
          return;
      }
    }
  }

  #newHead(): void {
    this.#state = State.Head;
    this.#scanned = 0;
    this.#headers = [];
    this.#length = -1;
    this.#te = false;
    this.#chunked = false;
    this.#close = false;
    this.#keepAliveToken = false;
  }

  /** Whether the head starting at `start` has an LF not preceded by CR at or after `from`. */
  #bareLf(buf: Buffer, start: number, from: number): boolean {
    for (let lf = buf.indexOf(LF, from); lf >= 0; lf = buf.indexOf(LF, lf + 1)) {
      if (lf === start || buf[lf - 1] !== CR) return true;
    }
    return false;
  }

  /** The status line and fields, blank line taken off; `rest`: bytes after it in this read. False when parsing stopped. */
  #head(text: string, rest: number): boolean {
    const eol = text.indexOf('\r\n');
    const m = STATUS_LINE.exec(eol < 0 ? text : text.slice(0, eol));
    if (!m) return this.#error('malformed status line');
    if (eol >= 0) {
      // All fields checked at once; the pattern also refuses a CR or LF left inside a line (no bare line endings).
      const fields = text.slice(eol);
      if (!FIELDS.test(fields)) return this.#error(/\r\n[\t ]/.test(fields) ? 'obs-fold' : 'malformed header line');
      const lines = fields.split('\r\n');
      for (let i = 1; i < lines.length; i++) {
        if (!this.#field(lines[i]!)) return false;
      }
    }
    return this.#headDone(Number(m[2]), m[3] ?? '', m[1] === '0', rest);
  }

  /** One field line, its syntax already checked. */
  #field(line: string): boolean {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const value = trimOws(line.slice(colon + 1));
    switch (name.length) {
      case 10:
        if (name.toLowerCase() === 'connection') this.#connection(value);
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') return this.#contentLength(name, value);
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding' && !this.#transferEncoding(value)) return this.#error('bad Transfer-Encoding');
        break;
    }
    this.#headers.push(name, value);
    return true;
  }

  #connection(value: string): void {
    for (const t of value.split(',')) {
      const token = trimOws(t).toLowerCase();
      if (token === 'close') this.#close = true;
      else if (token === 'keep-alive') this.#keepAliveToken = true;
    }
  }

  /**
   * 1*DIGIT, a safe integer. Repeats of one value (two fields, or a list) count
   * as one (RFC 9110 §8.6) and are passed on as one field; different values are an error.
   */
  #contentLength(name: string, value: string): boolean {
    const list = value.includes(',');
    let n = -1;
    for (const part of list ? value.split(',') : [value]) {
      const v = trimOws(part);
      const k = DIGITS.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(k) || (n >= 0 && k !== n)) return this.#error('bad Content-Length');
      n = k;
    }
    if (this.#length >= 0) return this.#length === n || this.#error('two different Content-Lengths');
    this.#length = n;
    this.#headers.push(name, list ? String(n) : value);
    return true;
  }

  /**
   * Codings, all headers together: chunked, once (RFC 9112 §6.1). Any other
   * coding is refused, as nginx does: meshd re-frames the body for its client
   * and drops Transfer-Encoding, so a gzip coding would reach the client
   * undeclared.
   */
  #transferEncoding(value: string): boolean {
    let codings = 0;
    for (const part of value.split(',')) {
      const semi = part.indexOf(';');
      const coding = trimOws(semi < 0 ? part : part.slice(0, semi)).toLowerCase();
      // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
      if (coding === '' && semi < 0) continue;
      if (coding !== 'chunked' || this.#chunked) return false;
      this.#chunked = true;
      codings++;
    }
    this.#te = true;
    return codings > 0;
  }

  #headDone(status: number, reason: string, http10: boolean, rest: number): boolean {
    if (status < 200) {
      // meshd's upstream client never asks to switch protocols.
      if (status === 101) return this.#error('101 to a request that asked for no upgrade');
      // Interim (100 Continue, 103 Early Hints): no body; the final head follows.
      this.#newHead();
      return true;
    }
    // Either could be the framing: no guessing which one the client would pick (RFC 9112 §6.3).
    if (this.#te && this.#length >= 0) return this.#error('both Transfer-Encoding and Content-Length');
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    if (this.#te && http10) return this.#error('Transfer-Encoding in HTTP/1.0');
    this.#keepAlive = !this.#close && (!http10 || this.#keepAliveToken);
    const headers = this.#headers;
    this.#headers = [];
    this.events.onHead(status, reason, headers);
    if (this.#state !== State.Head) return false;
    if (this.#isHead || status === 204 || status === 304) return this.#end(rest);
    if (this.#te) {
      this.#state = State.ChunkSize;
      return true;
    }
    if (this.#length === 0) return this.#end(rest);
    if (this.#length > 0) {
      this.#state = State.Length;
      this.#remaining = this.#length;
      return true;
    }
    this.#state = State.UntilClose;
    return true;
  }

  /** The response ended with `rest` bytes after it in this read; false when parsing stopped. */
  #end(rest: number): boolean {
    this.#state = State.Idle;
    this.events.onEnd(this.#keepAlive && rest === 0);
    return this.#live();
  }

  /** Callbacks may stop the parser; TypeScript's narrowing cannot see that. */
  #live(): boolean {
    return this.#state !== State.Dead;
  }

  #error(message: string): false {
    this.#state = State.Dead;
    this.#pending = undefined;
    this.events.onError(message);
    return false;
  }
}
