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
    ['routes: [{ name: a, publish: 80, backends: [] }, { name: b, publish: 80, backends: [] }]', /routes\[1\] \(b\): port 80 is already served by a/],
    ['routes: [{ name: a, publish: 80, mode: http, hosts: [x.test], paths: [/api], backends: [] }, { name: b, publish: 80, mode: http, hosts: [x.test], paths: [/api/, /web], backends: [] }]', /routes\[1\] \(b\): path \/api of host x\.test on port 80 is already served by a/],
    ['routes: [{ name: a, publish: 80, mode: http, paths: [api], backends: [] }]', /routes\[0\]\.paths\[0\]: "api" is not a path prefix/],
    ['routes: [{ name: a, publish: 80, mode: http, paths: [/a/../b], backends: [] }]', /routes\[0\]\.paths\[0\]/],
    ['routes: [{ name: a, publish: 80, paths: [/a], backends: [] }]', /routes\[0\]\.paths: only for mode http or https/],
    ['routes: [{ name: a, publish: 80, mode: http, stripPrefix: true, backends: [] }]', /routes\[0\]\.stripPrefix: needs paths/],
    ['routes: [{ name: a, publish: 80, lb: random, backends: [] }]', /routes\[0\]\.lb: must be one of round-robin, least-conn, p2c, source-hash/],
    ['routes: [{ name: a, publish: 80, mode: http, sticky: "cookie:a b", backends: [] }]', /routes\[0\]\.sticky: must be cookie or cookie:NAME/],
    ['routes: [{ name: a, publish: 80, sticky: cookie, backends: [] }]', /routes\[0\]\.sticky: only for mode http or https/],
    ['routes: [{ name: a, publish: 80, backends: [] }, { name: a, publish: 81, backends: [] }]', /"a" is used twice/],
    ['routes: [{ name: a, publish: 80, backends: [], maxConnections: 0 }]', /routes\[0\]\.maxConnections: 0 is not a whole number from 1 to 10000000/],
    ['routes: [{ name: a, publish: 80, backends: [], maxConnections: "lots" }]', /routes\[0\]\.maxConnections: "lots" is not a whole number/],
    ['routes: [{ name: a, publish: 80, backends: [], maxConnections: 2.5 }]', /routes\[0\]\.maxConnections: 2\.5/],
    ['routes: [{ name: a, publish: 80, backends: [], idleTimeout: forever }]', /routes\[0\]\.idleTimeout: "forever" is not a duration/],
    ['routes: [{ name: a, publish: 80, mode: http, backends: [], idleTimeout: 1m }]', /routes\[0\]\.idleTimeout: only for mode tcp/],
  ];
  for (const [text, re] of bad) {
    it(`refuses ${text}`, () => assert.throws(() => routesFromDocument(parse(text), defaults), re));
  }

  it('reads per-route limits', () => {
    const t = routesFromDocument(parse(`
routes:
  - { name: db, publish: 5432, backends: [], maxConnections: 200, idleTimeout: 15m }
  - { name: web, publish: 80, mode: http, backends: [], maxConnections: 5000 }
  - { name: plain, publish: 81, backends: [] }
`), defaults);
    const [web, plain, db] = t.routes;
    assert.deepEqual([db!.maxConnections, db!.idleTimeout], [200, 900_000]);
    assert.deepEqual([web!.maxConnections, web!.idleTimeout], [5000, undefined]);
    assert.ok(!('maxConnections' in plain!) && !('idleTimeout' in plain!));
  });

  it('lets a timeout it does not set follow a shorter interval, silently', () => {
    const t = routesFromDocument(parse('routes: [{ name: a, publish: 80, backends: [], health: { path: /, interval: 500ms } }]'), defaults);
    assert.deepEqual(t.routes[0]!.health, { path: '/', interval: 500, timeout: 500, rise: 2, fall: 3 });
    assert.deepEqual(t.routes[0]!.problems, []);
  });

  it('serves a route whose timeout exceeds its interval, clamped, with the problem shown', () => {
    const t = routesFromDocument(parse(`
routes:
  - { name: a, publish: 80, backends: [], health: { interval: 500ms, timeout: 2s } }
  - { name: b, publish: 81, backends: [], health: { timeout: 3s } }
  - { name: c, publish: 82, backends: [] }
`), defaults);
    const [a, b, c] = t.routes;
    assert.equal(a!.health.timeout, 500);
    assert.deepEqual(a!.problems, ['health.timeout (2000ms) exceeds the interval (500ms); the interval is used as timeout']);
    assert.equal(b!.health.timeout, 2000, 'a timeout above the default interval is a contradiction too');
    assert.match(b!.problems.join('\n'), /health\.timeout \(3000ms\) exceeds the interval \(2000ms\)/);
    assert.deepEqual(c!.problems, [], 'the other routes are untouched');
  });

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

  it('reads backend: h2c on http and https routes; a wrong value or a tcp route is a problem on the route, not a refused file', () => {
    const t = routesFromDocument(parse(`
routes:
  - { name: a, publish: 80, mode: http, backend: h2c, backends: [] }
  - { name: b, publish: 443, mode: https, backend: h2c, backends: [] }
  - { name: c, publish: 81, mode: http, backend: http1, backends: [] }
  - { name: d, publish: 82, mode: http, backends: [] }
  - { name: e, publish: 83, mode: http, backend: grpc, backends: [] }
  - { name: f, publish: 84, backend: h2c, backends: [] }
`), defaults);
    assert.deepEqual(t.routes.map((r) => [r.name, r.mode, r.backend, r.problems]), [
      ['a', 'http', 'h2c', []],
      ['c', 'http', undefined, []],
      ['d', 'http', undefined, []],
      ['e', 'http', undefined, ['routes[4].backend: "grpc" is not http1 or h2c; backends are spoken to over HTTP/1.1']],
      ['f', 'tcp', undefined, ['routes[5].backend: h2c applies to mode http or https only; a tcp route pipes bytes']],
      ['b', 'https', 'h2c', []],
    ]);
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

  it('reads a route\'s tls: acme apart from the top-level tls.certificates, on https routes with hosts only', () => {
    const t = routesFromDocument(parse(`
routes:
  - { name: a, publish: 443, mode: https, hosts: [A.test], tls: acme, backends: [] }
  - { name: b, publish: 8443, mode: https, hosts: [b.test], backends: [] }
tls: { certificates: [{ cert: b.crt, key: b.key }] }
`), defaults);
    assert.deepEqual(t.routes.map((r) => [r.name, r.acme, r.hosts]), [['a', true, ['a.test']], ['b', undefined, ['b.test']]]);
    assert.deepEqual(t.tls, { certificates: [{ cert: 'b.crt', key: 'b.key' }] });
    const refused: [string, RegExp][] = [
      ['routes: [{ name: a, publish: 443, mode: https, backends: [], tls: acme }]', /routes\[0\]\.tls: acme needs hosts/],
      ['routes: [{ name: a, publish: 443, mode: https, hosts: [], backends: [], tls: acme }]', /routes\[0\]\.tls: acme needs hosts/],
      ['routes: [{ name: a, publish: 80, mode: http, hosts: [a.test], backends: [], tls: acme }]', /routes\[0\]\.tls: only for mode https/],
      ['routes: [{ name: a, publish: 443, mode: https, hosts: [a.test], backends: [], tls: { certificates: [] } }]', /routes\[0\]\.tls: must be acme \(certificate files go under the top-level tls.certificates\)/],
    ];
    for (const [text, re] of refused) assert.throws(() => routesFromDocument(parse(text), defaults), re, text);
  });
});
