import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { routesFromDocument } from '../../src/discovery/file.js';

const defaults = { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } };

describe('routes file', () => {
  it('reads routes, durations and hosts', () => {
    const t = routesFromDocument(parse(`
routes:
  - name: web
    publish: 8080
    mode: http
    hosts: [Counter.Local.Dev]
    backends: ["127.0.0.1:9001", "[::1]:9002"]
    health: { path: /health, interval: 500ms, timeout: 200ms }
  - name: db
    publish: "5432"
    backends: [ "10.0.0.5:5432" ]
`), defaults);
    assert.equal(t.routes.length, 2);
    const [web, db] = [t.routes.find((r) => r.name === 'web')!, t.routes.find((r) => r.name === 'db')!];
    assert.deepEqual(web.health, { interval: 500, timeout: 200, rise: 2, fall: 3, path: '/health' });
    assert.deepEqual(web.hosts, ['counter.local.dev']);
    assert.deepEqual(web.backends.map((b) => [b.host, b.port]), [['127.0.0.1', 9001], ['::1', 9002]]);
    assert.equal(db.mode, 'tcp');
    assert.equal(db.port, 5432);
    assert.deepEqual(db.health, defaults.health);
  });

  const bad: [string, RegExp][] = [
    ['{}', /must hold `routes:`/],
    ['routes: [{ name: a, publish: 80, backends: ["x"] }]', /routes\[0\]\.backends\[0\]: "x" is not "host:port"/],
    ['routes: [{ name: a, publish: 99999, backends: [] }]', /routes\[0\]\.publish/],
    ['routes: [{ name: a, publish: 80, mode: udp, backends: [] }]', /mode: must be tcp, http or https/],
    ['routes: [{ name: a, publish: 80, backends: [], health: { interval: soon } }]', /health\.interval: "soon" is not a duration/],
    ['routes: [{ name: a, publish: 80, backends: [], colour: red }]', /routes\[0\]\.colour: unknown key/],
    ['routes: [{ name: a, publish: 80, backends: [] }, { name: b, publish: 80, backends: [] }]', /both claim port 80/],
    ['routes: [{ name: a, publish: 80, backends: [] }, { name: a, publish: 81, backends: [] }]', /"a" is used twice/],
  ];
  for (const [text, re] of bad) {
    it(`refuses ${text}`, () => assert.throws(() => routesFromDocument(parse(text), defaults), re));
  }

  it('lets L7 routes share a port with distinct hosts', () => {
    const t = routesFromDocument(parse(`
routes:
  - { name: a, publish: 80, mode: http, hosts: [a.dev], backends: [] }
  - { name: b, publish: 80, mode: http, backends: [] }
`), defaults);
    assert.equal(t.routes.length, 2);
  });

  it('reads tls.certificates and refuses a malformed tls section', () => {
    const t = routesFromDocument(parse('{ routes: [], tls: { certificates: [{ cert: site.crt, key: /k/site.key }] } }'), defaults);
    assert.deepEqual(t.tls, { certificates: [{ cert: 'site.crt', key: '/k/site.key' }] });
    assert.equal(routesFromDocument(parse('routes: []'), defaults).tls, undefined);
    assert.throws(() => routesFromDocument(parse('{ routes: [], tls: { certificates: [{ cert: a.crt }] } }'), defaults), /tls\.certificates\[0\]: must be \{ cert: PATH, key: PATH \}/);
    assert.throws(() => routesFromDocument(parse('{ routes: [], tls: { certs: [] } }'), defaults), /tls: must be a mapping with `certificates:`/);
  });

  it('reads redirect (http routes) and hsts (https routes)', () => {
    const t = routesFromDocument(parse(`
routes:
  - { name: a, publish: 80, mode: http, redirect: "https:8443", backends: [] }
  - { name: b, publish: 443, mode: https, hsts: "max-age=60", backends: [] }
`), defaults);
    assert.deepEqual(t.routes.map((r) => [r.redirectHttps, r.hsts]), [[8443, undefined], [undefined, 'max-age=60']]);
    assert.throws(() => routesFromDocument(parse('routes: [{ name: a, publish: 80, mode: https, redirect: https, backends: [] }]'), defaults), /redirect: only for mode http/);
    assert.throws(() => routesFromDocument(parse('routes: [{ name: a, publish: 80, mode: http, redirect: ftp, backends: [] }]'), defaults), /redirect: must be https or https:PORT/);
  });
});
