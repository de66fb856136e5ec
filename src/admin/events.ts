// Server-Sent Events for the dashboard. However many pages watch, one snapshot
// is built per tick or change, serialized once, and the same string is written
// to every open stream. Nothing runs while nobody watches.
import type { ServerResponse } from 'node:http';

export interface EventFeedOptions {
  /** Builds the current view, serialized (JSON); called once per tick or burst of changes. */
  view: () => string;
  /** Called once per tick before `view`, to take the counters that rates come from. */
  sample: () => void;
  /** Called when the last stream closes: samples from before a pause would skew rates after it. */
  idle: () => void;
  /** Rebuild period, for rates and for what no event announces (discovery errors, listen failures). */
  tickMs?: number;
  /** A `ping` event this often, so proxies keep idle streams open and pages can tell a dead stream. */
  heartbeatMs?: number;
  /** Changes within this delay share one rebuild (a table apply flips many health flags at once). */
  debounceMs?: number;
  /** A stream with more than this many bytes unsent is a reader that stopped reading: it is closed. */
  maxBufferedBytes?: number;
}

/** How long a page waits before reconnecting a stream that broke. */
const RETRY_MS = 2000;

export class EventFeed {
  readonly #o: Required<EventFeedOptions>;
  readonly #clients = new Set<ServerResponse>();
  #seq = 0;
  #lastView: string | undefined;
  #lastEvent = '';
  #tick: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: EventFeedOptions) {
    this.#o = { tickMs: 1000, heartbeatMs: 15_000, debounceMs: 50, maxBufferedBytes: 1 << 20, ...options };
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** Streams events to `res` (headers not yet sent) until it closes; the current snapshot is sent at once. */
  add(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no',
    });
    if (this.#closed) return void res.end();
    if (this.#clients.size === 0) this.#start();
    this.#clients.add(res);
    res.once('close', () => this.#remove(res));
    res.write(`retry: ${RETRY_MS}\n\n${this.#lastEvent}`);
  }

  /** The table or a backend's health changed: rebuild soon. */
  changed(): void {
    if (this.#clients.size === 0 || this.#soon) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.#publish();
    }, this.#o.debounceMs);
  }

  /** Ends every stream and stops the timers; later streams are ended at once. */
  close(): void {
    this.#closed = true;
    for (const res of this.#clients) res.end();
    this.#clients.clear();
    this.#stop();
  }

  #start(): void {
    this.#o.sample();
    this.#publish();
    this.#tick = setInterval(() => {
      this.#o.sample();
      this.#publish();
    }, this.#o.tickMs);
    this.#heartbeat = setInterval(() => this.#broadcast(`event: ping\ndata: ${Date.now()}\n\n`), this.#o.heartbeatMs);
  }

  #stop(): void {
    clearInterval(this.#tick);
    clearInterval(this.#heartbeat);
    clearTimeout(this.#soon);
    this.#tick = this.#heartbeat = this.#soon = undefined;
    this.#lastView = undefined;
    this.#lastEvent = '';
    this.#o.idle();
  }

  #remove(res: ServerResponse): void {
    if (!this.#clients.delete(res) || this.#clients.size > 0) return;
    this.#stop();
  }

  /** Builds the view once; sends it only when it differs from the last one sent. */
  #publish(): void {
    const view = this.#o.view();
    if (view === this.#lastView) return;
    this.#lastView = view;
    this.#lastEvent = `id: ${++this.#seq}\nevent: snapshot\ndata: {"time":${Date.now()},"view":${view}}\n\n`;
    this.#broadcast(this.#lastEvent);
  }

  #broadcast(event: string): void {
    for (const res of this.#clients) {
      if (res.writableLength > this.#o.maxBufferedBytes) res.destroy();
      else res.write(event);
    }
  }
}
