// Manager → worker snapshot streaming on loopback: token check, live updates,
// fail-over between manager instances, the last table kept while none answers,
// and a worker started before any manager following one as soon as it listens.
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { request } from 'undici';
import { silentLogger } from '../../src/core/log.js';
import { FEATURES_HEADER, PeerFollower, PeerServer, SNAPSHOTS_PATH, TASK_FAILED_PATH, type AcmeLines } from '../../src/discovery/peer.js';
import type { SwarmSnapshot } from '../../src/discovery/snapshot.js';
import { ChallengeSet, type ChallengeSnapshot } from '../../src/tls/challenges.js';
import { TestCA } from '../support/certs.js';
import { freePort, waitFor } from '../support/net.js';

const TOKEN = 's3cret-token';
function snapshot(replicas: number): SwarmSnapshot {
  return {
    services: [{ ID: 'svc', Spec: { Name: 'web', Labels: { 'meshd.publish': '80:80' } } }],
    tasks: [
      ...Array.from({ length: replicas }, (_, i) => ({ ID: `t${i}`, ServiceID: 'svc', DesiredState: 'running' as const, Status: { State: 'running' as const } })),
      { ID: 'old', ServiceID: 'svc', DesiredState: 'shutdown' as const, Status: { State: 'complete' as const } },
    ],
    nodes: [], networks: [],
  };
}

/**
 * A DNS server on loopback that, like swarm's for `tasks.<service>` before the
 * task is registered, answers nothing until `registered` is set; then every A
 * query gets 127.0.0.1 (and AAAA an empty answer).
 */
async function fakeSwarmDns(): Promise<{ port: number; registered: boolean; close(): void }> {
  const socket = dgram.createSocket('udp4');
  const state = {
    port: 0,
    registered: false,
    close: () => socket.close(),
  };
  socket.on('message', (query, from) => {
    if (!state.registered || query.length < 17) return;
    let end = 12;
    while (end < query.length && query[end] !== 0) end += query[end]! + 1;
    const question = query.subarray(12, end + 5);
    const isA = question.readUInt16BE(question.length - 4) === 1;
    const head = Buffer.alloc(12);
    query.copy(head, 0, 0, 2);
    head.writeUInt16BE(0x8180, 2); // a response, recursion desired and available, no error
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(isA ? 1 : 0, 6);
    // Name (a pointer to the question's), type A, class IN, TTL 0, 4 bytes: 127.0.0.1.
    const answer = isA ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]) : Buffer.alloc(0);
    socket.send(Buffer.concat([head, question, answer]), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  state.port = socket.address().port;
  return state;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP relay in front of `port` that keeps every byte the server sent: what an observer of the network sees. */
async function tap(port: number): Promise<{ port: number; wire: () => string; close(): void }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.once('close', () => { client.destroy(); upstream.destroy(); });
    }
    upstream.on('data', (c: Buffer) => chunks.push(c));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as net.AddressInfo).port,
    wire: () => Buffer.concat(chunks).toString('latin1'),
    close: () => {
      for (const s of sockets) s.destroy();
      relay.close();
    },
  };
}

describe('peers', () => {
  const servers: PeerServer[] = [];
  const followers: PeerFollower[] = [];
  after(async () => {
    for (const f of followers) f.stop();
    for (const s of servers) await s.close();
  });

  it('refuses a request without the right token with 401 and nothing else', async () => {
    const server = new PeerServer(TOKEN, silentLogger(), () => assert.fail('no task report without the token'));
    servers.push(server);
    const port = await server.listen('127.0.0.1', 0);
    server.publish(snapshot(1));
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }] as Record<string, string>[]) {
      const res = await request(`http://127.0.0.1:${port}${SNAPSHOTS_PATH}`, { headers });
      assert.equal(res.statusCode, 401);
      assert.equal(await res.body.text(), 'unauthorized\n');
    }
  });

  it('streams snapshots to a follower, fails over to another manager, and keeps the last one while none answers', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const firstReports: string[] = [];
    const first = new PeerServer(TOKEN, silentLogger(), (task) => firstReports.push(task));
    servers.push(first);
    await first.listen('127.0.0.1', p1);
    first.publish(snapshot(2));

    const seen: SwarmSnapshot[] = [];
    const errors: string[] = [];
    const follower = new PeerFollower({
      peers: [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`], port: 0, token: TOKEN, log: silentLogger(), retryDelay: 100,
      onSnapshot: (s) => seen.push(s), onError: (e) => errors.push((e as Error).message),
    });
    followers.push(follower);
    follower.start();
    await waitFor(() => seen.length === 1, 5000, 'first snapshot');
    assert.deepEqual(seen[0]!.tasks.map((t) => t.ID), ['t0', 't1'], 'only running tasks travel');

    first.publish(snapshot(2));
    first.publish(snapshot(3));
    await waitFor(() => seen.length === 2, 5000, 'second snapshot');
    assert.equal(seen[1]!.tasks.length, 3, 'an unchanged snapshot is not sent again');

    const reported: string[] = [];
    const reporting = new PeerServer(TOKEN, silentLogger(), (task) => reported.push(task));
    servers.push(reporting);
    const rp = await reporting.listen('127.0.0.1', 0);
    const post = (body: string, token = TOKEN) => request(`http://127.0.0.1:${rp}${TASK_FAILED_PATH}`, { method: 'POST', body, headers: { authorization: `Bearer ${token}` } }).then(async (r) => { await r.body.dump(); return r.statusCode; });
    assert.equal(await post('{"task":"t1"}', 'wrong'), 401);
    assert.equal(await post('not json'), 400);
    assert.equal(await post('{"task":"t1"}'), 204);
    assert.deepEqual(reported, ['t1']);
    await follower.reportTaskFailed('t0');
    assert.deepEqual(firstReports, ['t0'], 'a follower reports to the manager it follows');

    await first.close();
    await waitFor(() => errors.length >= 2, 5000, 'errors while no manager answers');
    assert.equal(seen.length, 2, 'nothing replaces the last snapshot');

    const second = new PeerServer(TOKEN, silentLogger());
    servers.push(second);
    await second.listen('127.0.0.1', p2);
    second.publish(snapshot(1));
    await waitFor(() => seen.length === 3, 5000, 'snapshot from the second manager');
    assert.equal(follower.current, `127.0.0.1:${p2}`);
    assert.equal(seen[2]!.tasks.length, 1);
  });

  it('follows a manager at the node addresses its engine names while swarm DNS does not know the name yet', async () => {
    const swarmDns = await fakeSwarmDns();
    const servers0 = dns.getServers();
    dns.setServers([`127.0.0.1:${swarmDns.port}`]);
    try {
      const port = await freePort();
      const manager = new PeerServer(TOKEN, silentLogger());
      servers.push(manager);
      await manager.listen('127.0.0.1', port);
      manager.publish(snapshot(2));
      const start = (fallback?: string[]) => {
        const seen: SwarmSnapshot[] = [];
        const follower = new PeerFollower({
          peers: 'tasks.meshd.test', port, token: TOKEN, log: silentLogger(), onSnapshot: (s) => seen.push(s), onError: () => undefined,
          ...(fallback ? { fallbackHosts: async () => fallback } : {}),
        });
        followers.push(follower);
        follower.start();
        return { follower, seen };
      };
      const dnsOnly = start();
      // A dead address first: the next one is still tried.
      const withEngine = start(['127.0.0.2', '127.0.0.1']);
      await waitFor(() => withEngine.seen.length === 1, 3000, 'a snapshot through the engine\'s manager addresses');
      assert.equal(withEngine.follower.current, `127.0.0.1:${port}`);
      await sleep(500);
      assert.equal(dnsOnly.seen.length, 0, 'without them, nothing until DNS knows the name');
      dnsOnly.follower.stop();
    } finally {
      dns.setServers(servers0);
      swarmDns.close();
    }
  });

  it('follows a manager within moments of it listening when started before it, then retries at the normal delay once it had a table', async () => {
    const swarmDns = await fakeSwarmDns();
    const servers0 = dns.getServers();
    dns.setServers([`127.0.0.1:${swarmDns.port}`]);
    try {
      const port = await freePort();
      const seen: SwarmSnapshot[] = [];
      const errors: string[] = [];
      // A normal delay well above the bound below: only the retries while starting can meet it.
      const follower = new PeerFollower({
        peers: 'tasks.meshd.test', port, token: TOKEN, log: silentLogger(), retryDelay: 4000,
        onSnapshot: (s) => seen.push(s), onError: (e) => errors.push((e as Error).message),
      });
      followers.push(follower);
      follower.start();

      // As in a fresh deployment: the name is unknown for a moment, then the manager's port refuses.
      await sleep(1000);
      swarmDns.registered = true;
      await sleep(1000);
      assert.ok(errors.some((e) => e.includes('ECONNREFUSED')), `the follower reached the refusing port: ${errors.slice(-3).join('; ')}`);

      const manager = new PeerServer(TOKEN, silentLogger());
      servers.push(manager);
      await manager.listen('127.0.0.1', port);
      const listening = Date.now();
      manager.publish(snapshot(2));
      await waitFor(() => seen.length === 1, 10_000, 'first snapshot');
      const lag = Date.now() - listening;
      assert.ok(lag < 2000, `first snapshot ${lag} ms after the manager listened`);

      // Once it has had a table, a lost manager is retried at the normal delay.
      const before = errors.length;
      await manager.close();
      await sleep(1500);
      assert.ok(errors.length - before <= 2, `${errors.length - before} failed attempts in 1.5 s: ${errors.slice(before).join('; ')}`);
      assert.equal(seen.length, 1, 'the last snapshot stays');
    } finally {
      dns.setServers(servers0);
      swarmDns.close();
    }
  });
});

describe('ACME over the peer stream', () => {
  const servers: PeerServer[] = [];
  const followers: PeerFollower[] = [];
  const closers: (() => void)[] = [];
  const ca = new TestCA();
  after(async () => {
    for (const f of followers) f.stop();
    for (const s of servers) await s.close();
    for (const c of closers) c();
    ca.remove();
  });

  /** A follower that applies tokens to its own set (after `delay` ms) and keeps what it receives. */
  function follower(port: number, token = TOKEN, delay = 0) {
    const got = { challenges: new ChallengeSet(), certificates: [] as { names: string[]; certPem: string; keyPem: string }[], bad: [] as string[], errors: [] as string[], snapshots: 0 };
    const acme: AcmeLines = {
      onChallenges: async (tokens: ChallengeSnapshot) => {
        // Infinity: a follower that never finishes, without a timer holding the test process.
        await (delay === Infinity ? new Promise(() => undefined) : sleep(delay));
        got.challenges.apply(tokens);
      },
      onCertificate: (names, certPem, keyPem) => void got.certificates.push({ names, certPem, keyPem }),
      onBadLine: (reason) => void got.bad.push(reason),
    };
    const f = new PeerFollower({
      peers: [`127.0.0.1:${port}`], port: 0, token, log: silentLogger(), retryDelay: 100, acme,
      onSnapshot: () => void got.snapshots++, onError: (e) => void got.errors.push((e as Error).message),
    });
    followers.push(f);
    f.start();
    return { f, got };
  }

  it('carries tokens and certificates to a follower, the key sealed on the wire; a follower without the token gets nothing', async () => {
    const server = new PeerServer(TOKEN, silentLogger());
    servers.push(server);
    const port = await server.listen('127.0.0.1', 0);
    server.publish(snapshot(1));
    const wire = await tap(port);
    closers.push(wire.close);

    const pem = ca.issue(['a.test']);
    // Published before anyone follows: a follower gets it on connecting.
    server.publishCertificate(['a.test'], pem.cert, pem.key);
    const { got } = follower(wire.port);
    const intruder = follower(port, 'wrong-token');

    await waitFor(() => got.certificates.length === 1, 5000, 'the certificate');
    assert.deepEqual(got.certificates[0], { names: ['a.test'], certPem: pem.cert, keyPem: pem.key });
    assert.equal(got.snapshots, 1, 'snapshots still travel');

    const seq = server.publishChallenges({ tok1: 'tok1.thumb' });
    assert.equal(await server.acknowledged(seq, 5000), true);
    assert.equal(got.challenges.get('tok1'), 'tok1.thumb', 'applied before the acknowledgement');

    const renewed = ca.issue(['a.test']);
    server.publishCertificate(['a.test'], renewed.cert, renewed.key);
    await waitFor(() => got.certificates.length === 2, 5000, 'the renewed certificate');
    assert.equal(got.certificates[1]!.keyPem, renewed.key);

    const bytes = wire.wire();
    assert.ok(bytes.includes('tok1.thumb') && bytes.includes(pem.cert.split('\n')[1]!), 'the tap sees the stream');
    assert.doesNotMatch(bytes, /PRIVATE KEY/);
    for (const k of [pem.key, renewed.key]) {
      // Each PEM line as JSON would carry it, and the secret scalar in other spellings.
      const d = Buffer.from(createPrivateKey(k).export({ format: 'jwk' }).d!, 'base64url');
      const lines = k.split('\n').filter((l) => l && !l.startsWith('-----'));
      for (const spelling of [...lines, d.toString('base64'), d.toString('base64url'), d.toString('hex'), d.toString('latin1')]) {
        assert.ok(!bytes.includes(spelling), 'no key in clear on the wire');
      }
    }

    await waitFor(() => intruder.got.errors.some((e) => e.includes('answered 401')), 5000, 'the intruder refused');
    assert.deepEqual([intruder.got.certificates, intruder.got.challenges.size, intruder.got.snapshots], [[], 0, 0]);
  });

  it('acknowledged() waits for every follower to apply the tokens, and gives up after its bound', async () => {
    const server = new PeerServer(TOKEN, silentLogger());
    servers.push(server);
    const port = await server.listen('127.0.0.1', 0);
    const quick = follower(port);
    const slow = follower(port, TOKEN, 600);
    await waitFor(() => server.followers === 2, 5000, 'two followers');
    await sleep(100); // their hello lines are read

    const t0 = Date.now();
    const seq = server.publishChallenges({ tok2: 'tok2.thumb' });
    assert.equal(await server.acknowledged(seq, 5000), true);
    assert.ok(Date.now() - t0 >= 550, `waited for the slow follower (${Date.now() - t0} ms)`);
    assert.equal(quick.got.challenges.get('tok2'), 'tok2.thumb');
    assert.equal(slow.got.challenges.get('tok2'), 'tok2.thumb');

    // A follower that never finishes applying cannot hold an order.
    const stuck = follower(port, TOKEN, Infinity);
    await waitFor(() => server.followers === 3, 5000, 'a third follower');
    const t1 = Date.now();
    assert.equal(await server.acknowledged(server.publishChallenges({}), 400), false);
    assert.ok(Date.now() - t1 < 1500);
    stuck.f.stop();
  });

  it('sends typed lines only to followers that ask for them, and a follower skips lines it cannot use', async () => {
    const server = new PeerServer(TOKEN, silentLogger());
    servers.push(server);
    const port = await server.listen('127.0.0.1', 0);
    server.publish(snapshot(1));
    server.publishChallenges({ tok3: 'tok3.thumb' });
    /** What the stream sends within 300 ms. */
    const read = async (headers: Record<string, string>) => {
      const res = await request(`http://127.0.0.1:${port}${SNAPSHOTS_PATH}`, { headers: { authorization: `Bearer ${TOKEN}`, ...headers }, signal: AbortSignal.timeout(300) });
      let text = '';
      try {
        for await (const c of res.body) text += c.toString();
      } catch { /* the timeout ends the read */ }
      return text;
    };
    const old = await read({});
    assert.match(old, /"services"/);
    assert.doesNotMatch(old, /"type"/, 'an older follower reads snapshots only');
    assert.match(await read({ [FEATURES_HEADER]: 'acme' }), /"type":"challenges"/);

    // Lines sealed under another token (a peer from another deployment): refused, counted, the stream goes on.
    const other = new PeerServer('other-token', silentLogger());
    servers.push(other);
    const otherPort = await other.listen('127.0.0.1', 0);
    const pem = ca.issue(['b.test']);
    other.publishCertificate(['b.test'], pem.cert, pem.key);
    const sealedElsewhere = await new Promise<string>((resolve) => {
      void request(`http://127.0.0.1:${otherPort}${SNAPSHOTS_PATH}`, { headers: { authorization: 'Bearer other-token', [FEATURES_HEADER]: 'acme' } }).then(async (res) => {
        for await (const c of res.body) {
          const line = c.toString().split('\n').find((l: string) => l.includes('"certificate"'));
          if (line) return resolve(line);
        }
      });
    });
    const fake = net.createServer((s) => {
      s.on('error', () => s.destroy());
      s.once('data', () => s.write('HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n'
        + [sealedElsewhere, '{"type":"certificate","names":["c.test"]}', '{"type":"future-line"}', JSON.stringify(snapshot(2))]
          .map((l) => { const b = l + '\n'; return `${Buffer.byteLength(b).toString(16)}\r\n${b}\r\n`; }).join('')));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    closers.push(() => fake.close());
    const { got } = follower((fake.address() as net.AddressInfo).port);
    await waitFor(() => got.snapshots >= 1, 5000, 'the snapshot after the bad lines');
    assert.deepEqual(got.certificates, []);
    assert.equal(got.bad.length, 2);
    assert.match(got.bad[0]!, /cannot unseal: another token/);
    assert.match(got.bad[1]!, /malformed certificate line/);
  });
});
