// The admin API behind --admin-token-file: probes stay open, everything else
// needs the bearer token, and refusals are counted.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/config.js';
import { get } from '../support/net.js';
import { TestMeshd } from '../support/meshd.js';

const TOKEN = 'c3b1e0f4a9d8';

async function withMeshd(token: string | undefined, fn: (m: TestMeshd) => Promise<void>): Promise<void> {
  const m = new TestMeshd();
  const flags: string[] = [];
  if (token !== undefined) {
    const file = path.join(m.dir, 'admin-token');
    fs.writeFileSync(file, `${token}\n`);
    flags.push('--admin-token-file', file);
  }
  try {
    await m.start([], flags);
    await fn(m);
  } finally {
    await m.stop();
  }
}

const refused = (metrics: string) => Number(/^meshd_admin_unauthorized_total (\d+)$/m.exec(metrics)?.[1]);

describe('admin token', () => {
  it('leaves /healthz and /readyz open and asks every other path for the token', () => withMeshd(TOKEN, async (m) => {
    const port = m.adminPort;
    for (const p of ['/healthz', '/readyz', '/healthz?verbose=1']) assert.equal((await get(port, p)).status, 200, p);

    const attempts: [string, Record<string, string>][] = [
      ['/metrics', {}],
      ['/api/routes', {}],
      ['/api/routes?x=/healthz', {}],
      ['/no-such-path', {}],
      ['/api/routes', { authorization: `Bearer ${TOKEN}x` }],
      ['/api/routes', { authorization: `Bearer ${TOKEN.slice(1)}` }],
      ['/api/routes', { authorization: TOKEN }],
      ['/api/routes', { authorization: `Basic ${Buffer.from(`meshd:${TOKEN}`).toString('base64')}` }],
    ];
    for (const [p, headers] of attempts) {
      const r = await get(port, p, headers);
      assert.equal(r.status, 401, `${p} ${JSON.stringify(headers)}`);
      assert.match(String(r.headers['www-authenticate']), /^Bearer\b/);
      assert.doesNotMatch(r.body, /routes|meshd_/, 'nothing leaks in the refusal');
    }

    const auth = { authorization: `Bearer ${TOKEN}` };
    const routes = await get(port, '/api/routes', auth);
    assert.equal(routes.status, 200);
    assert.equal(JSON.parse(routes.body).loaded, true);
    assert.equal((await get(port, '/no-such-path', auth)).status, 404, 'past the token, routing as usual');
    const metrics = await get(port, '/metrics', auth);
    assert.equal(metrics.status, 200);
    assert.equal(refused(metrics.body), attempts.length);
  }));

  it('is open without --admin-token-file, and counts no refusals', () => withMeshd(undefined, async (m) => {
    assert.equal((await get(m.adminPort, '/api/routes')).status, 200);
    assert.equal(refused((await get(m.adminPort, '/metrics')).body), 0);
  }));

  it('refuses to start with a missing or empty token file, naming the flag', async () => {
    const m = new TestMeshd();
    try {
      const empty = path.join(m.dir, 'empty');
      fs.writeFileSync(empty, ' \n');
      for (const [file, re] of [[path.join(m.dir, 'absent'), /^--admin-token-file: cannot read .*absent \(ENOENT\)$/], [empty, /^--admin-token-file: .*empty is empty$/]] as const) {
        // A meshd that started anyway is stopped, so the test fails instead of hanging.
        const err = await m.start([], ['--admin-token-file', file]).then(async () => { await m.meshd.stop(); return undefined; }, (e: unknown) => e);
        assert.ok(err instanceof ConfigError && re.test(err.message), String(err));
      }
    } finally {
      fs.rmSync(m.dir, { recursive: true, force: true });
    }
  });
});
