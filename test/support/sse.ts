// A Server-Sent Events reader over a plain HTTP GET, as a browser's EventSource
// reads the stream: events split on blank lines, `field: value` lines, comments skipped.
import http from 'node:http';

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  ended = false;
  #buffer = '';

  private constructor(readonly res: http.IncomingMessage, readonly req: http.ClientRequest) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => this.#read(chunk));
    res.on('close', () => (this.ended = true));
  }

  /** Opens a stream; resolves with the response head (whatever its status). */
  static open(port: number, headers: http.OutgoingHttpHeaders = {}, path = '/api/events'): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path, headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => resolve(new SseClient(res, req)));
      req.setTimeout(5000, () => req.destroy(new Error('no response head within 5 s')));
      req.on('error', reject);
    });
  }

  get status(): number {
    return this.res.statusCode ?? 0;
  }

  /** The `snapshot` events' data, parsed. */
  snapshots<T = { time: number; view: Record<string, unknown> }>(): T[] {
    return this.events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data) as T);
  }

  close(): void {
    this.req.destroy();
  }

  #read(chunk: string): void {
    this.#buffer += chunk;
    let end: number;
    while ((end = this.#buffer.indexOf('\n\n')) >= 0) {
      const block = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      const e: SseEvent = { id: undefined, event: 'message', data: '' };
      let data: string[] | undefined;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const [field, value = ''] = line.split(/: ?(.*)/s, 2) as [string, string | undefined];
        if (field === 'id') e.id = value;
        else if (field === 'event') e.event = value;
        else if (field === 'data') (data ??= []).push(value);
      }
      if (data === undefined) continue;
      e.data = data.join('\n');
      this.events.push(e);
    }
  }
}
