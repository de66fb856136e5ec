// Memory per connection: N clients (plain net sockets) each make one request
// through a proxy and then stay open and idle; the proxy's RSS before and after
// gives KiB per connection. For L4 targets every client connection also holds
// one backend connection, so the figure covers both.
import net from 'node:net';
import { round, sleep } from './harness.js';
import { familyKiB } from './proc.js';

export interface IdleResult {
  connections: number;
  failed: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  kibPerConnection: number;
  /** RSS after each quarter of the connections opened, to show the growth is steady rather than one jump. */
  rssStepsKiB: number[];
}

function openOne(port: number): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: bench\r\n\r\n'));
    const timer = setTimeout(() => {
      s.destroy();
      resolve(undefined);
    }, 5000);
    s.once('data', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.on('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

export async function measureIdle(port: number, pid: number, count = 1000): Promise<IdleResult> {
  const rss = () => familyKiB(pid, 'VmRSS');
  const before = rss();
  const sockets: net.Socket[] = [];
  const steps: number[] = [];
  let failed = 0;
  const batch = 50;
  for (let i = 0; i < count; i += batch) {
    const opened = await Promise.all(Array.from({ length: Math.min(batch, count - i) }, () => openOne(port)));
    for (const s of opened) (s ? sockets.push(s) : failed++);
    if ((i + batch) % (count / 4) === 0) steps.push(rss());
  }
  await sleep(1000);
  const after = rss();
  for (const s of sockets) s.destroy();
  await sleep(500);
  return {
    connections: sockets.length,
    failed,
    rssBeforeKiB: before,
    rssAfterKiB: after,
    kibPerConnection: round((after - before) / Math.max(1, sockets.length), 1),
    rssStepsKiB: steps,
  };
}
