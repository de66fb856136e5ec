// A unix-socket proxy in front of a lab engine's API: it records every request
// method and path (to prove meshd only reads) and counts the bytes answered, and can be cut and restored to
// play an engine that goes away.
import http from 'node:http';
import type net from 'node:net';
import fs from 'node:fs';

export class DockerApiProxy {
  readonly requests: string[] = [];
  /** Bytes of the engine's answers passed on. */
  responseBytes = 0;
  readonly #server: http.Server;
  readonly #sockets = new Set<net.Socket>();

  constructor(readonly listenPath: string, readonly enginePath: string) {
    this.#server = http.createServer((req, res) => {
      this.requests.push(`${req.method} ${req.url}`);
      const up = http.request({ socketPath: this.enginePath, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode!, upRes.headers);
        upRes.on('data', (c: Buffer) => { this.responseBytes += c.length; });
        upRes.pipe(res);
      });
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    });
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
  }

  async start(): Promise<void> {
    fs.rmSync(this.listenPath, { force: true });
    await new Promise<void>((resolve) => this.#server.listen(this.listenPath, resolve));
  }

  /** The engine "goes away": the socket stops answering and open streams break. */
  async cut(): Promise<void> {
    const closed = new Promise((r) => this.#server.close(r));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  async stop(): Promise<void> {
    if (this.#server.listening) await this.cut();
    fs.rmSync(this.listenPath, { force: true });
  }
}
