// node's own HTTP parser (llhttp), as its HTTP client uses it (strict, not
// --insecure-http-parser), to read responses the way a real client would.
import { createRequire } from 'node:module';

interface Parser {
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  execute(b: Buffer): number | Error;
  finish(): undefined | Error;
  [k: number]: unknown;
}
const { HTTPParser } = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: (new () => Parser) & Record<'RESPONSE' | 'kOnHeadersComplete' | 'kOnBody' | 'kOnMessageComplete', number>;
};

export interface LlhttpMessage { status: number; reason: string; headers: string[]; body: string; keepAlive: boolean }

/** Responses read off one connection; `methods[i]` is the method of the i-th request (GET if absent). */
export class LlhttpResponses {
  readonly messages: LlhttpMessage[] = [];
  error: string | undefined;
  readonly #parser = new HTTPParser();
  #current: LlhttpMessage | undefined;
  #body: Buffer[] = [];

  constructor(readonly methods: string[] = []) {
    const p = this.#parser;
    p.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    p[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, headers: string[], _m: unknown, _u: unknown, status: number, reason: string, _up: boolean, keepAlive: boolean) => {
      this.#current = { status, reason, headers, body: '', keepAlive };
      // As node's client does: a response to HEAD has no body.
      return status >= 200 && this.methods[this.messages.length] === 'HEAD' ? 1 : 0;
    };
    p[HTTPParser.kOnBody] = (b: Buffer) => this.#body.push(Buffer.from(b));
    p[HTTPParser.kOnMessageComplete] = () => {
      // Interim (1xx) responses are left out: the final one answers the request.
      if (this.#current!.status >= 200) this.messages.push({ ...this.#current!, body: Buffer.concat(this.#body).toString('latin1') });
      this.#current = undefined;
      this.#body = [];
    };
  }

  execute(chunk: Buffer): void {
    if (this.error !== undefined) return;
    const r = this.#parser.execute(chunk);
    if (r instanceof Error) this.error = (r as NodeJS.ErrnoException).code ?? r.message;
  }

  /** The connection closed. */
  finish(): void {
    if (this.error !== undefined) return;
    const r = this.#parser.finish();
    if (r instanceof Error) this.error = (r as NodeJS.ErrnoException).code ?? r.message;
  }
}
