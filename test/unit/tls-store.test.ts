// The certificate store against real certificates made by openssl in a temp dir.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { CertStore, pairsInDir } from '../../src/tls/store.js';
import { TestCA, writeAtomic, type Pem } from '../support/certs.js';

/** A logger whose lines a test can read. */
function captureLog(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: pino({ level: 'info' }, { write: (s: string) => void lines.push(s) }), lines };
}

describe('certificate store', () => {
  let ca: TestCA;
  let a: Pem, b: Pem, wild: Pem, other: Pem, expired: Pem, noNames: Pem;
  const dirs: string[] = [];
  const tmp = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-tls-'));
    dirs.push(d);
    return d;
  };

  before(() => {
    ca = new TestCA();
    a = ca.issue(['a.test']);
    b = ca.issue(['b.test', 'www.b.test']);
    wild = ca.issue(['*.w.test']);
    other = ca.issue(['a.test']);
    expired = ca.issue(['old.test'], -1);
    noNames = ca.issue([], 1, 'nameless');
  });
  after(() => {
    ca.remove();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('pairs files by name and ignores what is not a certificate', () => {
    const pairs = pairsInDir('/s', ['a.crt', 'a.key', 'b.pem', 'b-key.pem', 'c.pem', 'meshd_token', 'd.key', 'e.crt.tmp']);
    assert.deepEqual(pairs.map((p) => [p.label, p.cert, p.key]), [
      ['a', '/s/a.crt', '/s/a.key'],
      ['b', '/s/b.pem', '/s/b-key.pem'],
      ['c', '/s/c.pem', undefined],
    ]);
  });

  it('loads .crt/.key, .pem/-key.pem and a single file with both; names come from subjectAltName', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'a.crt'), a.cert);
    fs.writeFileSync(path.join(dir, 'a.key'), a.key);
    fs.writeFileSync(path.join(dir, 'b.pem'), b.cert);
    fs.writeFileSync(path.join(dir, 'b-key.pem'), b.key);
    fs.writeFileSync(path.join(dir, 'w.pem'), wild.key + wild.cert);
    fs.writeFileSync(path.join(dir, 'meshd_token'), 'not a certificate');
    const store = new CertStore({ dir, log: pino({ level: 'silent' }) });
    store.poll();
    const v = store.view();
    assert.deepEqual(v.certificates.map((c) => [path.basename(c.source), c.names, c.serving, c.problems]), [
      ['a.crt', ['a.test'], true, []],
      ['b.pem', ['b.test', 'www.b.test'], true, []],
      ['w.pem', ['*.w.test'], true, []],
    ]);
    assert.equal(store.size, 3);
  });

  it('picks by exact name, then a one-label wildcard, then the default; each context built once', () => {
    const dir = tmp();
    for (const [name, pem] of [['a', a], ['b', b], ['w', wild]] as const) {
      fs.writeFileSync(path.join(dir, `${name}.crt`), pem.cert);
      fs.writeFileSync(path.join(dir, `${name}.key`), pem.key);
    }
    const store = new CertStore({ dir, log: pino({ level: 'silent' }) });
    store.poll();
    const names = (host: string | undefined) => store.lookup(host)?.names;
    assert.deepEqual(names('a.test'), ['a.test']);
    assert.deepEqual(names('WWW.B.test.'), ['b.test', 'www.b.test']);
    assert.deepEqual(names('x.w.test'), ['*.w.test']);
    assert.deepEqual(names('y.x.w.test'), ['a.test'], 'a wildcard covers one label only: the default answers');
    assert.deepEqual(names('w.test'), ['a.test']);
    assert.deepEqual(names(undefined), ['a.test'], 'no SNI: the default (first loaded)');
    assert.equal(store.certificateFor('y.x.w.test'), undefined);
    assert.equal(store.certificateFor('x.w.test'), store.lookup('x.w.test'));
    assert.equal(store.lookup('a.test')!.context, store.lookup('a.test')!.context);

    for (const name of ['w', 'www.b.test']) {
      const named = new CertStore({ dir, defaultName: name, log: pino({ level: 'silent' }) });
      named.poll();
      assert.deepEqual(named.lookup('nothing.test')?.names, name === 'w' ? ['*.w.test'] : ['b.test', 'www.b.test'], `--tls-default-cert ${name}`);
      assert.equal(named.view().certificates.filter((c) => c.default).length, 1);
    }
  });

  it('refuses a mismatched key, garbage and an expired certificate, with a problem each and no crash', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'mismatch.crt'), a.cert);
    fs.writeFileSync(path.join(dir, 'mismatch.key'), b.key);
    fs.writeFileSync(path.join(dir, 'garbage.pem'), '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n' + a.key);
    fs.writeFileSync(path.join(dir, 'old.crt'), expired.cert);
    fs.writeFileSync(path.join(dir, 'old.key'), expired.key);
    fs.writeFileSync(path.join(dir, 'nokey.crt'), a.cert);
    const { log, lines } = captureLog();
    const store = new CertStore({ dir, log });
    store.poll();
    const problems = Object.fromEntries(store.view().certificates.map((c) => [path.basename(c.source), [c.serving, c.problems.join('; ')]]));
    assert.deepEqual(Object.keys(problems).sort(), ['garbage.pem', 'mismatch.crt', 'nokey.crt', 'old.crt']);
    assert.match(String(problems['mismatch.crt']), /false,the private key does not match the certificate/);
    assert.match(String(problems['garbage.pem']), /false,the certificate cannot be parsed/);
    assert.match(String(problems['old.crt']), /false,the certificate expired on/);
    assert.match(String(problems['nokey.crt']), /false,no PEM private key found/);
    assert.equal(store.size, 0);
    assert.equal(store.lookup('a.test'), undefined);
    assert.equal(store.errors, 4);
    assert.equal(lines.filter((l) => /certificate refused/.test(l)).length, 4, 'each refusal is logged');
    assert.ok(!lines.join('').includes('PRIVATE KEY'), 'no key in the log');
  });

  it('serves a replaced file without restart, and keeps the old certificate when the new file is bad', () => {
    const dir = tmp();
    const crt = path.join(dir, 'site.crt');
    const key = path.join(dir, 'site.key');
    writeAtomic(crt, a.cert);
    writeAtomic(key, a.key);
    const store = new CertStore({ dir, log: pino({ level: 'silent' }) });
    let changes = 0;
    store.on('change', () => changes++);
    store.poll();
    const first = store.lookup('a.test')!.fingerprint;

    writeAtomic(crt, other.cert);
    writeAtomic(key, other.key);
    store.poll();
    const second = store.lookup('a.test')!.fingerprint;
    assert.notEqual(second, first, 'the new certificate serves');

    writeAtomic(crt, 'garbage');
    store.poll();
    assert.equal(store.lookup('a.test')!.fingerprint, second, 'the previous certificate keeps serving');
    const v = store.view().certificates[0]!;
    assert.equal(v.serving, true);
    assert.match(v.problems[0]!, /no PEM certificate found/);

    store.poll();
    assert.equal(store.errors, 1, 'an unchanged bad file is not read again');
    fs.rmSync(crt);
    store.poll();
    assert.equal(store.lookup('a.test'), undefined, 'a file gone from the folder stops serving');
    assert.equal(changes, 3);
  });

  it('takes certificates from memory (put) and from the routes file, and never shows a key', () => {
    const dir = tmp();
    const store = new CertStore({ dir: path.join(dir, 'missing'), log: pino({ level: 'silent' }) });
    store.poll();
    assert.deepEqual(store.view(), { dir: path.join(dir, 'missing'), defaultName: null, certificates: [] }, 'a missing folder is simply empty');

    assert.equal(store.put('acme:a.test', a.cert, a.key), true);
    assert.equal(store.put('acme:a.test', a.cert, b.key), false);
    assert.equal(store.lookup('a.test')!.source, 'acme:a.test', 'a refused put keeps the previous certificate');

    fs.writeFileSync(path.join(dir, 'b.crt'), b.cert);
    fs.writeFileSync(path.join(dir, 'b.key'), b.key);
    store.setRoutesFiles([{ cert: path.join(dir, 'b.crt'), key: path.join(dir, 'b.key') }, { cert: path.join(dir, 'nope.crt'), key: path.join(dir, 'nope.key') }]);
    assert.equal(store.lookup('b.test')!.source, path.join(dir, 'b.crt'));
    const nope = store.view().certificates.find((c) => c.source.endsWith('nope.crt'))!;
    assert.equal(nope.origin, 'routes-file');
    assert.match(nope.problems[0]!, /cannot read it: ENOENT/);

    store.put('nameless', noNames.cert, noNames.key);
    assert.match(store.view().certificates.find((c) => c.source === 'nameless')!.problems[0]!, /no DNS names/);
    const text = JSON.stringify(store.view());
    assert.ok(!text.includes('PRIVATE KEY') && !text.includes(a.key.split('\n')[1]!), 'no key in the view');

    store.setRoutesFiles([]);
    assert.equal(store.lookup('b.test')?.source, 'acme:a.test', 'a certificate dropped from the routes file stops serving');
    store.remove('acme:a.test');
    store.remove('nameless');
    assert.equal(store.lookup('a.test'), undefined);
  });
});
