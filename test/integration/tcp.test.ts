// L4 through a real meshd in front of real TCP servers on loopback.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TestMeshd } from '../support/meshd.js';
import { freePort, waitFor } from '../support/net.js';

/** A TCP server that reads until the client half-closes, then answers with its name and the byte count. */
class TcpBackend {
  readonly server: net.Server;
  readonly sockets = new Set<net.Socket>();
  port = 0;
  constructor(readonly name: string, onData?: (socket: net.Socket, data: Buffer) => void) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('error', () => {});
      s.on('end', () => {
        const data = Buffer.concat(chunks);
        if (onData) return onData(s, data);
        // Answer only after the client's FIN: this is what half-close must carry.
        s.end(`${name}:${data.length}`);
      });
    });
  }
  async start(port = 0): Promise<this> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }
  get address() { return `127.0.0.1:${this.port}`; }
  async kill(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** Connects, sends `payload`, shuts the write side, and reads everything until the server closes. */
function exchange(port: number, payload: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => s.end(payload));
    let text = '';
    s.on('data', (c) => (text += c));
    s.on('end', () => resolve(text));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
  });
}

describe('L4 proxy', () => {
  let port: number;
  let m: TestMeshd;
  const backends: TcpBackend[] = [];

  before(async () => {
    port = await freePort();
    backends.push(await new TcpBackend('a').start(), await new TcpBackend('b').start());
    m = await new TestMeshd().start([{ name: 'db', publish: port, mode: 'tcp', backends: backends.map((b) => b.address) }]);
  });
  after(async () => {
    await m.stop();
    for (const b of backends) await b.kill();
  });

  it('alternates connections over the backends', async () => {
    const names: string[] = [];
    for (let i = 0; i < 6; i++) names.push((await exchange(port, 'hi')).split(':')[0]!);
    assert.deepEqual(names, [names[0], names[1], names[0], names[1], names[0], names[1]]);
    assert.notEqual(names[0], names[1]);
  });

  it('carries half-close: a client that shuts its write side still gets the whole answer', async () => {
    const payload = Buffer.alloc(2 * 1024 * 1024, 'z');
    const answer = await exchange(port, payload);
    assert.match(answer, new RegExp(`^[ab]:${payload.length}$`));
  });

  it('holds a fast backend back while the client does not read, and delivers every byte once it does', async () => {
    const total = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
    let flushed = 0;
    const served = new Set<net.Socket>();
    const fast = net.createServer((s) => {
      served.add(s);
      s.on('error', () => {});
      let sent = 0;
      const more = () => {
        while (sent < total) {
          sent += chunk.length;
          const last = sent >= total;
          const ok = s.write(chunk, () => (flushed += chunk.length));
          if (last) s.end();
          if (!ok) return void s.once('drain', more);
        }
      };
      more();
    });
    await new Promise<void>((r) => fast.listen(0, '127.0.0.1', r));
    const p2 = await freePort();
    await m.update([
      { name: 'db', publish: port, mode: 'tcp', backends: backends.map((b) => b.address) },
      { name: 'fast', publish: p2, mode: 'tcp', backends: [`127.0.0.1:${(fast.address() as net.AddressInfo).port}`] },
    ]);
    const client = net.connect({ port: p2, host: '127.0.0.1' });
    client.pause();
    try {
      await new Promise((r) => client.once('connect', r));
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(flushed < total * 0.75, `the backend wrote ${flushed} of ${total} bytes to a client that read nothing`);
      let received = 0;
      let wrong = 0;
      client.on('data', (c: Buffer) => {
        for (let i = 0; i < c.length; i += 4099) if (c[i] !== (received + i) % (64 * 1024) % 251) wrong++;
        received += c.length;
      });
      client.resume();
      await new Promise((r) => client.once('end', r));
      assert.equal(received, total);
      assert.equal(wrong, 0, 'bytes arrived in order');
    } finally {
      client.destroy();
      for (const s of served) s.destroy();
      await new Promise((r) => fast.close(r));
    }
  });

  it('retries a refused connect on another backend, ejects the dead one, and takes it back', async () => {
    const victim = backends[0]!;
    await victim.kill();
    const answers: string[] = [];
    for (let i = 0; i < 10; i++) answers.push(await exchange(port, 'x'));
    assert.deepEqual(answers, Array(10).fill('b:1'));
    const b = m.backend(port, victim.address)!;
    assert.equal(b.ejected, true);
    assert.ok(m.meshd.stats.retries >= 1);
    await victim.start(victim.port);
    await waitFor(() => b.eligible, 5000, 'backend back after probes pass');
    const names = new Set<string>();
    for (let i = 0; i < 4; i++) names.add(await exchange(port, 'x'));
    assert.deepEqual([...names].sort(), ['a:1', 'b:1']);
  });

  it('sends a PROXY protocol v2 header with the client address when asked', async () => {
    let header: Buffer | undefined;
    const pp = await new TcpBackend('pp', (s, data) => {
      if (data.length) header = data; // health probes connect and close without data
      s.end('ok');
    }).start();
    const p2 = await freePort();
    await m.update([
      { name: 'db', publish: port, mode: 'tcp', backends: backends.map((b) => b.address) },
      { name: 'pp', publish: p2, mode: 'tcp', backends: [pp.address], proxyProtocol: true },
    ]);
    const client = net.connect({ port: p2, host: '127.0.0.1', allowHalfOpen: true });
    await new Promise((r) => client.once('connect', r));
    const localPort = client.localPort!;
    client.end('payload');
    let reply = '';
    client.on('data', (c) => (reply += c));
    await new Promise((r) => client.once('end', r));
    assert.equal(reply, 'ok');
    assert.ok(header);
    assert.equal(header.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a');
    assert.equal(header[13], 0x11, 'TCP over IPv4');
    assert.equal([...header.subarray(16, 20)].join('.'), '127.0.0.1');
    assert.equal(header.readUInt16BE(24), localPort, 'the client\'s own port');
    assert.equal(header.readUInt16BE(26), p2);
    assert.equal(header.subarray(28).toString(), 'payload');
    await pp.kill();
  });
});
