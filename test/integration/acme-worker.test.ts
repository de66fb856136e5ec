// A meshd on a worker, following a manager's peer stream on loopback: it answers
// the ordering instance's HTTP-01 token on its own plain-HTTP port, and serves
// the certificate that arrives sealed on the stream; it never orders itself.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config.js';
import { createLogger } from '../../src/core/log.js';
import { PeerServer } from '../../src/discovery/peer.js';
import type { SwarmSnapshot } from '../../src/discovery/snapshot.js';
import { startMeshd, type Meshd } from '../../src/meshd.js';
import { TestCA } from '../support/certs.js';
import { Backend, freePort, get, waitFor } from '../support/net.js';

const TOKEN = 'worker-test-token';

function httpsGet(port: number, host: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', servername: host, ca, agent: false, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

describe('a worker meshd with ACME from its manager', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-acme-worker-'));
  const ca = new TestCA();
  const backend = new Backend('web');
  const server = new PeerServer(TOKEN, createLogger('silent'));
  const lines: string[] = [];
  let worker: Meshd | undefined;
  let admin: number;
  let httpPort: number;
  let httpsPort: number;

  before(async () => {
    await backend.start();
    [httpPort, httpsPort, admin] = [await freePort(), await freePort(), await freePort()];
    const peerPort = await server.listen('127.0.0.1', 0);
    const snapshot: SwarmSnapshot = {
      services: [{ ID: 'svc', Spec: { Name: 'web', Labels: {
        'meshd.publish': `${httpPort}:${backend.port}/http,${httpsPort}:${backend.port}/https`, 'meshd.hosts': 'a.test', 'meshd.tls': 'acme',
      } } }],
      tasks: [{ ID: 't1', ServiceID: 'svc', DesiredState: 'running', Status: { State: 'running' }, NetworksAttachments: [{ Network: { ID: 'n1', Spec: { Name: 'meshd' } }, Addresses: ['127.0.0.1/8'] }] }],
      nodes: [], networks: [],
    };
    server.publish(snapshot);
    fs.writeFileSync(path.join(dir, 'token'), TOKEN);
    const config = parseConfig([
      '--role', 'worker', '--peers', `127.0.0.1:${peerPort}`, '--peer-token-file', path.join(dir, 'token'),
      '--docker-host', 'unix:///nonexistent/meshd-test/docker.sock', '--listen-host', '127.0.0.1', '--admin-addr', `127.0.0.1:${admin}`,
      '--tls-dir', path.join(dir, 'tls'), '--acme-storage', path.join(dir, 'acme'), '--health-interval', '200ms', '--health-timeout', '150ms', '--drain-timeout', '2s',
    ], {});
    if (config === 'help') throw new Error('unexpected help');
    worker = await startMeshd(config, createLogger('debug', { write: (s: string) => void lines.push(s) }));
    await waitFor(() => worker!.table.loaded, 5000, 'the table from the manager');
    await worker.settled();
  });

  after(async () => {
    await worker?.stop();
    await server.close();
    await backend.kill();
    ca.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const acmeStatus = async () => {
    const view = JSON.parse((await get(admin, '/api/routes')).body) as { routes: { port: number; acme?: Record<string, unknown> }[] };
    return view.routes.find((r) => r.port === httpsPort)!.acme!;
  };

  it('answers the manager\'s token on its plain-HTTP port once it has acknowledged it', async () => {
    assert.deepEqual(await acmeStatus(), { names: ['a.test'], state: 'pending', ordering: false });
    const token = 'Tok_en-1';
    assert.notEqual((await get(httpPort, `/.well-known/acme-challenge/${token}`)).body, `${token}.thumb`);
    const seq = server.publishChallenges({ [token]: `${token}.thumb` });
    assert.equal(await server.acknowledged(seq, 5000), true, 'the worker acknowledged');
    const r = await get(httpPort, `/.well-known/acme-challenge/${token}`, { host: 'a.test' });
    assert.deepEqual([r.status, r.body, r.headers['content-type']], [200, `${token}.thumb`, 'text/plain']);
    // Before route matching: a Host no route serves gets the token too.
    assert.equal((await get(httpPort, `/.well-known/acme-challenge/${token}`)).body, `${token}.thumb`);
    assert.equal((await get(httpPort, '/', { host: 'a.test' })).body, 'web', 'everything else goes to the route');
    server.publishChallenges({});
  });

  it('serves the certificate that arrives on the stream, and keeps its key out of its log and admin API', async () => {
    const pem = ca.issue(['a.test']);
    server.publishCertificate(['a.test'], pem.cert, pem.key);
    const r = await waitFor(() => httpsGet(httpsPort, 'a.test', ca.pem).catch(() => undefined), 5000, 'the certificate served');
    assert.deepEqual([r.status, r.body], [200, 'web']);
    const s = await acmeStatus();
    assert.deepEqual([s.state, s.ordering], ['valid', false]);
    assert.ok(!fs.existsSync(path.join(dir, 'acme')), 'a worker keeps nothing on disk');
    const keyLine = pem.key.split('\n')[1]!;
    for (const text of [lines.join(''), (await get(admin, '/api/routes')).body, (await get(admin, '/metrics')).body]) {
      assert.doesNotMatch(text, /PRIVATE KEY/);
      assert.ok(!text.includes(keyLine));
    }
    assert.match((await get(admin, '/metrics')).body, /^meshd_acme_peer_errors_total 0$/m);
  });
});
