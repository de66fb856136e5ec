// Memory per connection: 1,000 clients each make one request, then stay idle.
import net from 'node:net';
import { memoryKiB } from './proc.js';

interface IdleTarget { label: string; port: number; pids: () => number[] }

const rss = (pids: number[]) => pids.reduce((n, pid) => n + memoryKiB(pid, 'VmRSS'), 0);

function openOne(port: number): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: bench\r\n\r\n'));
    const timer = setTimeout(() => { s.destroy(); resolve(undefined); }, 5000);
    s.once('data', () => { clearTimeout(timer); resolve(s); });
    s.on('error', () => { clearTimeout(timer); resolve(undefined); });
  });
}

export async function measureIdle(targets: IdleTarget[], count: number) {
  const out: Record<string, { rssBeforeKiB: number; rssAfterKiB: number; kibPerConnection: number; failed: number }> = {};
  for (const t of targets) {
    const before = rss(t.pids());
    const sockets: net.Socket[] = [];
    let failed = 0;
    for (let i = 0; i < count; i += 100) {
      const batch = await Promise.all(Array.from({ length: Math.min(100, count - i) }, () => openOne(t.port)));
      for (const s of batch) s ? sockets.push(s) : failed++;
    }
    await new Promise((r) => setTimeout(r, 500));
    const after = rss(t.pids());
    out[t.label] = { rssBeforeKiB: before, rssAfterKiB: after, kibPerConnection: Math.round(((after - before) / count) * 10) / 10, failed };
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 1000));
  }
  return out;
}
