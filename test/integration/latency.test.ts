// Request-duration histograms in /metrics: counts match the requests served,
// buckets are cumulative, and a slow backend lands in the right buckets.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get } from '../support/net.js';

function series(text: string, name: string, port: number): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`^${name}(_bucket|_sum|_count)\\{([^}]*)\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) {
    if (!m[2]!.includes(`route="slow"`) || !m[2]!.includes(`port="${port}"`)) continue;
    const le = /le="([^"]+)"/.exec(m[2]!)?.[1];
    out.set(le ? `le=${le}` : m[1]!.slice(1), Number(m[3]));
  }
  return out;
}

describe('latency histograms', () => {
  let m: TestMeshd;
  let slow: Backend;
  let port: number;

  before(async () => {
    port = await freePort();
    slow = await new Backend('slow', (_req, res) => void setTimeout(() => res.end('late'), 120)).start();
    m = await new TestMeshd().start([{ name: 'slow', publish: port, mode: 'http', backends: [slow.address] }]);
  });
  after(async () => {
    await m.stop();
    await slow.kill();
  });

  it('records every request, total and upstream, in cumulative buckets', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await get(port)).body, 'late');
    const text = (await get(m.adminPort, '/metrics')).body;
    for (const name of ['meshd_request_duration_seconds', 'meshd_upstream_response_seconds']) {
      assert.match(text, new RegExp(`^# TYPE ${name} histogram$`, 'm'));
      const s = series(text, name, port);
      assert.equal(s.get('count'), 5, `${name} count`);
      assert.equal(s.get('le=+Inf'), 5);
      assert.equal(s.get('le=0.1'), 0, 'none under 100 ms: the backend takes 120');
      assert.equal(s.get('le=0.25'), 5);
      assert.ok(s.get('sum')! >= 0.6 && s.get('sum')! < 1.25, `${name} sum ${s.get('sum')}`);
      let last = 0;
      for (const [k, v] of s) if (k.startsWith('le=')) { assert.ok(v >= last, 'cumulative'); last = v; }
    }
  });
});
