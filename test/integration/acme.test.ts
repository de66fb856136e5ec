// AcmeManager against a real ACME server (pebble) on loopback: orders over
// HTTP-01 answered by a plain node server through answerChallenge, storage and
// reload, renewal at two thirds of a 60 s lifetime, and failures with backoff.
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { AcmeManager, type AcmeOptions } from '../../src/tls/acme.js';
import { answerChallenge, ChallengeSet } from '../../src/tls/challenges.js';
import { waitFor } from '../support/net.js';
import { startPebble, type Pebble } from '../support/pebble.js';

const VALIDITY_S = 60;

interface Issue { names: string[]; certPem: string; keyPem: string; at: number }

/** A manager whose log lines and issued certificates the test can read. */
function manager(pebble: Pebble, challenges: ChallengeSet, storageDir: string, extra: Partial<AcmeOptions> = {}) {
  const lines: string[] = [];
  const issued: Issue[] = [];
  const log = createLogger('debug', { write: (s: string) => void lines.push(s) });
  const m = new AcmeManager({
    directoryUrl: pebble.directoryUrl, email: 'ops@a.test', caFile: pebble.caFile, storageDir, log, challenges,
    onCertificate: (names, certPem, keyPem) => void issued.push({ names, certPem, keyPem, at: Date.now() }),
    ...extra,
  });
  return { m, lines, issued, logged: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function chain(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

function last(issued: Issue[], name: string): Issue | undefined {
  return issued.filter((i) => i.names.includes(name)).at(-1);
}

describe('ACME against pebble', { timeout: 150_000 }, () => {
  let pebble: Pebble;
  let responder: http.Server;
  let hits = 0;
  const challenges = new ChallengeSet();
  /** The sets the responder answers from, each rightly or wrongly. */
  const answering = new Map<ChallengeSet, 'right' | 'wrong'>([[challenges, 'right']]);
  const work = mkdtempSync(path.join(os.tmpdir(), 'meshd-acme-'));
  const storage = path.join(work, 'a');
  let a: ReturnType<typeof manager>;

  before(async () => {
    responder = http.createServer((req, res) => {
      for (const [set, how] of answering) {
        const body = answerChallenge(set, req.method, req.url);
        if (body === undefined) continue;
        hits++;
        return void res.writeHead(200, { 'content-type': 'text/plain' }).end(how === 'right' ? body : `${body.split('.')[0]}.wrong`);
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => responder.listen(0, '127.0.0.1', resolve));
    pebble = await startPebble({ httpPort: (responder.address() as net.AddressInfo).port, validitySeconds: VALIDITY_S });
  });

  after(async () => {
    await a?.m.stop();
    pebble?.stop();
    await new Promise((r) => responder?.close(r));
    rmSync(work, { recursive: true, force: true });
  });

  it('orders a one-name and a two-name certificate over HTTP-01, each a full chain up to pebble\'s root', async () => {
    a = manager(pebble, challenges, storage);
    a.m.want([['a.test'], ['C.test', 'b.test', 'b.test']]);
    assert.deepEqual(a.m.status().map((s) => [s.names, s.state, s.nextAttempt]), [[['a.test'], 'pending', undefined], [['b.test', 'c.test'], 'pending', undefined]]);
    await a.m.start();
    await waitFor(() => a.issued.length >= 2, 30_000, `two certificates (status ${JSON.stringify(a.m.status())})\n${pebble.output().slice(-2000)}`);

    const root = new X509Certificate(await pebble.root());
    for (const [names, issue] of [[['a.test'], last(a.issued, 'a.test')!], [['b.test', 'c.test'], last(a.issued, 'b.test')!]] as const) {
      assert.deepEqual(issue.names, names);
      const [leaf, intermediate, ...more] = chain(issue.certPem);
      assert.ok(leaf && intermediate, 'leaf and intermediate');
      assert.equal(more.length, 0);
      assert.deepEqual(leaf.subjectAltName!.split(', ').sort(), names.map((n) => `DNS:${n}`));
      assert.ok(leaf.checkIssued(intermediate) && leaf.verify(intermediate.publicKey), 'leaf signed by the intermediate');
      assert.ok(intermediate.checkIssued(root) && intermediate.verify(root.publicKey), 'intermediate signed by pebble\'s root');
      assert.ok(leaf.checkPrivateKey(createPrivateKey(issue.keyPem)), 'the key is the leaf\'s');
    }
    assert.ok(hits >= 3, `pebble fetched a token for each of the 3 names (${hits} fetches)`);
    assert.equal(challenges.size, 0, 'tokens removed once validated');

    const status = a.m.status();
    const leafA = chain(last(a.issued, 'a.test')!.certPem)[0]!;
    assert.equal(status[0]!.state, 'valid');
    assert.equal(status[0]!.notAfter, new Date(leafA.validTo).toISOString());
    const lifetime = Date.parse(leafA.validTo) - Date.parse(leafA.validFrom);
    assert.equal(Date.parse(status[0]!.renewAt!), Date.parse(leafA.validFrom) + Math.floor(lifetime * 2 / 3));
    assert.equal(status[0]!.nextAttempt, status[0]!.renewAt);
    assert.deepEqual(a.m.counters, { issued: 2, failures: 0 });

    // Stored: account key and each pair, keys readable by the owner only.
    assert.deepEqual(readdirSync(path.join(storage, 'certificates')).sort().map((f) => f.replace(/\+[0-9a-f]{12}/, '+HASH')),
      ['a.test.crt', 'a.test.key', 'b.test+HASH.crt', 'b.test+HASH.key']);
    for (const f of ['account.key', 'certificates/a.test.key']) assert.equal(statSync(path.join(storage, f)).mode & 0o777, 0o600, f);

    // No private key in a log line or in the status.
    const keyBody = last(a.issued, 'a.test')!.keyPem.split('\n')[1]!;
    for (const text of [a.lines.join(''), JSON.stringify(a.m.status())]) {
      assert.doesNotMatch(text, /PRIVATE KEY/);
      assert.ok(!text.includes(keyBody));
    }
    assert.ok(a.logged().some((l) => l.msg === 'certificate issued'));
  });

  it('a second manager on the same storage serves the stored certificates without ordering, and stop leaves no timer', async () => {
    const hitsBefore = hits;
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const timersBefore = timers();
    const b = manager(pebble, new ChallengeSet(), storage);
    try {
      b.m.want([['b.test', 'c.test'], ['a.test']]);
      await b.m.start();
      assert.deepEqual(b.issued.map((i) => [i.names, i.certPem, i.keyPem]).sort(),
        [last(a.issued, 'a.test')!, last(a.issued, 'b.test')!].map((i) => [i.names, i.certPem, i.keyPem]).sort());
      assert.deepEqual(b.m.status().map((s) => s.state), ['valid', 'valid']);
      assert.ok(timers() > timersBefore, 'a renewal is scheduled');
    } finally {
      await b.m.stop();
    }
    assert.equal(timers(), timersBefore);
    assert.equal(hits, hitsBefore, 'no validation, so no new order');
    assert.deepEqual(b.m.counters, { issued: 0, failures: 0 });
  });

  it('a certificate adopted from a peer is stored, and a manager started later serves it without ordering', async () => {
    const hitsBefore = hits;
    const held = last(a.issued, 'a.test')!;
    const other = last(a.issued, 'b.test')!;
    const dir = path.join(work, 'd');
    const d = manager(pebble, new ChallengeSet(), dir);
    try {
      assert.equal(await d.m.adopt(['a.test'], held.certPem, other.keyPem), false, 'a key that is not the certificate\'s');
      assert.equal(await d.m.adopt(['b.test'], held.certPem, held.keyPem), false, 'names the certificate does not cover');
      assert.equal(await d.m.adopt(['A.test'], held.certPem, held.keyPem), true);
      assert.equal(await d.m.adopt(['a.test'], held.certPem, held.keyPem), false, 'not newer than the one held');
      assert.deepEqual(readdirSync(path.join(dir, 'certificates')).sort(), ['a.test.crt', 'a.test.key']);
      assert.equal(d.issued.length, 0, 'the caller already serves what it adopts');
      assert.doesNotMatch(d.lines.join(''), /PRIVATE KEY/);
    } finally {
      await d.m.stop();
    }
    // A new manager on that storage, as when this instance starts ordering.
    const e = manager(pebble, new ChallengeSet(), dir);
    try {
      e.m.want([['a.test']]);
      await e.m.start();
      assert.deepEqual(e.issued.map((i) => [i.certPem, i.keyPem]), [[held.certPem, held.keyPem]]);
      assert.equal(e.m.status()[0]!.state, 'valid');
    } finally {
      await e.m.stop();
    }
    assert.equal(hits, hitsBefore, 'no validation, so no new order');
  });

  it('a failed renewal is reported with a doubling delay while the held certificate stays valid, then succeeds', async () => {
    // A copy of the storage, seen from a clock just past the renewal point.
    const copy = path.join(work, 'c');
    cpSync(storage, copy, { recursive: true });
    const held = last(a.issued, 'a.test')!;
    const leaf = chain(held.certPem)[0]!;
    const renewAt = Date.parse(leaf.validFrom) + Math.floor((Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) * 2 / 3);
    const shift = renewAt + 1000 - Date.now();
    const challengesC = new ChallengeSet();
    const c = manager(pebble, challengesC, copy, { now: () => Date.now() + shift, retry: { min: 300, max: 1200 } });
    try {
      answering.set(challengesC, 'wrong');
      c.m.want([['a.test']]);
      await c.m.start();
      assert.equal(c.issued.length, 1, 'the stored certificate is served at once');
      const failures = await waitFor(() => {
        const s = c.m.status()[0]!;
        return s.failures >= 3 ? s : undefined;
      }, 20_000, 'three failed renewals');
      assert.equal(failures.state, 'valid', 'still valid while renewal fails');
      assert.equal(failures.notAfter, new Date(leaf.validTo).toISOString());
      assert.match(failures.lastError!, /key authorization file from the server did not match/, 'the CA\'s reason');
      assert.ok(Date.parse(failures.nextAttempt!) > Date.now() + shift, 'next attempt is in the future');
      const delays = c.logged().filter((l) => l.msg === 'certificate renewal failed; the current one is still served').map((l) => l.retryIn);
      assert.deepEqual(delays.slice(0, 3), [300, 600, 1200]);
      assert.ok(c.m.counters.failures >= 3);
      assert.equal(c.issued.length, 1, 'nothing new handed out while failing');

      answering.set(challengesC, 'right');
      await waitFor(() => c.issued.length === 2, 20_000, 'a renewed certificate once the responder answers right');
      const renewed = chain(c.issued[1]!.certPem)[0]!;
      assert.notEqual(renewed.serialNumber, leaf.serialNumber);
      assert.notEqual(c.issued[1]!.keyPem, held.keyPem, 'a new key for each certificate');
      const s = c.m.status()[0]!;
      assert.equal(s.state, 'valid');
      assert.equal(s.failures, 0);
      assert.equal(s.lastError, undefined);
      assert.equal(s.notAfter, new Date(renewed.validTo).toISOString());
    } finally {
      answering.delete(challengesC);
      await c.m.stop();
    }
  });

  it('renews on the real clock at two thirds of the lifetime', async () => {
    const first = last(a.issued, 'a.test')!;
    const leaf = chain(first.certPem)[0]!;
    const renewAt = Date.parse(leaf.validFrom) + Math.floor((Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) * 2 / 3);
    const next = await waitFor(() => {
      const l = last(a.issued, 'a.test');
      return l !== first ? l : undefined;
    },
      renewAt - Date.now() + 20_000, `renewal of a.test (status ${JSON.stringify(a.m.status())})`);
    // validFrom/validTo have a one-second resolution.
    assert.ok(next.at >= renewAt - 1000, `renewed ${renewAt - next.at} ms before the renewal point`);
    assert.ok(next.at < Date.parse(leaf.validTo), 'renewed before expiry');
    assert.notEqual(chain(next.certPem)[0]!.serialNumber, leaf.serialNumber);
    assert.equal(a.m.status()[0]!.notAfter, new Date(chain(next.certPem)[0]!.validTo).toISOString());
    assert.equal(a.m.status()[0]!.failures, 0);
  });
});

describe('ACME names', () => {
  it('refuses names a CA cannot validate over HTTP-01, without ordering them', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshd-acme-'));
    const m = new AcmeManager({
      directoryUrl: 'https://127.0.0.1:1/dir', storageDir: dir, log: createLogger('silent'), challenges: new ChallengeSet(),
      onCertificate: () => assert.fail('nothing to issue'),
    });
    try {
      m.want([['localhost'], ['10.0.0.1'], ['*.a.test'], ['a_b.test'], ['ok.test', 'bad..test']]);
      await m.start();
      const status = m.status();
      assert.deepEqual(status.map((s) => s.state), ['failed', 'failed', 'failed', 'failed', 'failed']);
      for (const s of status) {
        assert.match(s.lastError!, /is not a DNS name a CA validates over HTTP-01/);
        assert.equal(s.nextAttempt, undefined);
      }
      assert.deepEqual(readdirSync(dir), [], 'no account was even created');
    } finally {
      await m.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
