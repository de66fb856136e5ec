import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLabels } from '../../src/table/labels.js';

describe('parseLabels', () => {
  const cases: { labels: Record<string, string>; publish: string[]; problems: RegExp[] }[] = [
    { labels: { 'meshd.publish': '8080:80' }, publish: ['8080:80/tcp'], problems: [] },
    { labels: { 'meshd.publish': '8080:80/http, 9000:6379/tcp' }, publish: ['8080:80/http', '9000:6379/tcp'], problems: [] },
    { labels: { 'meshd.publish': '443:80/https, 80:80/http' }, publish: ['443:80/https', '80:80/http'], problems: [] },
    { labels: { 'meshd.publish': 'notaport' }, publish: [], problems: [/not PUBLISHED:TARGET/] },
    { labels: { 'meshd.publish': '8084:80/udp' }, publish: [], problems: [/protocol "udp"/] },
    { labels: { 'meshd.publish': '70000:80' }, publish: [], problems: [/outside 1-65535/] },
    { labels: { 'meshd.publish': '8080:80,8080:81' }, publish: ['8080:80/tcp'], problems: [/listed twice/] },
    { labels: { 'meshd.publish': '8080:80,bad' }, publish: ['8080:80/tcp'], problems: [/"bad"/] },
    { labels: { 'meshd.publish': '1:1', 'meshd.unknown': '1' }, publish: ['1:1/tcp'], problems: [/meshd.unknown: unknown label/] },
    { labels: { 'com.example.other': 'x', 'meshd.publish': '80:80' }, publish: ['80:80/tcp'], problems: [] },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.labels)}`, () => {
      const out = parseLabels(c.labels);
      assert.deepEqual(out.publish.map((p) => `${p.published}:${p.target}/${p.mode}`), c.publish);
      assert.equal(out.problems.length, c.problems.length, out.problems.join('; '));
      c.problems.forEach((re, i) => assert.match(out.problems[i]!, re));
    });
  }

  it('reads health overrides and reports bad ones without dropping the rest', () => {
    const out = parseLabels({
      'meshd.health.path': '/healthz', 'meshd.health.interval': '500ms', 'meshd.health.timeout': 'fast',
      'meshd.health.rise': '3', 'meshd.health.fall': '0',
    });
    assert.deepEqual(out.health, { path: '/healthz', interval: 500, rise: 3 });
    assert.equal(out.problems.length, 2);
    assert.match(out.problems.join('\n'), /meshd.health.timeout: "fast" is not a duration/);
    assert.match(out.problems.join('\n'), /meshd.health.fall: "0"/);
  });

  it('reads hosts (lower-cased) and proxy protocol', () => {
    const out = parseLabels({ 'meshd.hosts': 'Counter.Local.Dev, a.example', 'meshd.proxy-protocol': 'v2' });
    assert.deepEqual(out.hosts, ['counter.local.dev', 'a.example']);
    assert.equal(out.proxyProtocol, true);
    assert.match(parseLabels({ 'meshd.proxy-protocol': 'v1' }).problems[0]!, /write v2/);
  });

  it('reads per-route limits', () => {
    const out = parseLabels({ 'meshd.max-connections': '250', 'meshd.idle-timeout': '5m' });
    assert.deepEqual([out.maxConnections, out.idleTimeout, out.problems], [250, 300_000, []]);
    const none = parseLabels({ 'meshd.publish': '80:80' });
    assert.deepEqual([none.maxConnections, none.idleTimeout], [undefined, undefined]);
  });

  for (const bad of ['0', '-1', 'lots', '1.5', '1e3', '10000001', '']) {
    it(`reports meshd.max-connections=${JSON.stringify(bad)} and sets no limit`, () => {
      const out = parseLabels({ 'meshd.max-connections': bad });
      assert.equal(out.maxConnections, undefined);
      assert.equal(out.problems.length, 1);
      assert.match(out.problems[0]!, new RegExp(`^meshd\\.max-connections: "${bad.replace('.', '\\.')}" is not a whole number from 1 to 10000000`));
    });
  }

  for (const bad of ['forever', '0s', '-5s', '1d']) {
    it(`reports meshd.idle-timeout=${JSON.stringify(bad)} and keeps the default`, () => {
      const out = parseLabels({ 'meshd.idle-timeout': bad });
      assert.equal(out.idleTimeout, undefined);
      assert.deepEqual(out.problems.length, 1);
      assert.match(out.problems[0]!, /^meshd\.idle-timeout: ".*" is not a duration .*the default is used/);
    });
  }

  it('names every label it reads when it meets an unknown one', () => {
    const [problem] = parseLabels({ 'meshd.max-conns': '5' }).problems;
    for (const known of ['meshd.publish', 'meshd.hosts', 'meshd.proxy-protocol', 'meshd.max-connections', 'meshd.idle-timeout', 'meshd.health.']) assert.ok(problem!.includes(known), `${known} in: ${problem}`);
  });

  it('tolerates services without labels', () => {
    assert.deepEqual(parseLabels(undefined).publish, []);
  });

  it('reads meshd.redirect and meshd.hsts, and reports bad ones', () => {
    assert.equal(parseLabels({ 'meshd.redirect': 'https' }).redirectHttps, 443);
    assert.equal(parseLabels({ 'meshd.redirect': 'https:8443' }).redirectHttps, 8443);
    assert.equal(parseLabels({ 'meshd.hsts': 'max-age=31536000; includeSubDomains' }).hsts, 'max-age=31536000; includeSubDomains');
    const bad = parseLabels({ 'meshd.redirect': 'http:80', 'meshd.hsts': 'forever' });
    assert.deepEqual([bad.redirectHttps, bad.hsts], [undefined, undefined]);
    assert.match(bad.problems.join('\n'), /meshd.redirect: "http:80" is not https or https:PORT/);
    assert.match(bad.problems.join('\n'), /meshd.hsts: "forever" is not max-age=SECONDS/);
  });

  it('reads meshd.backend (http1, h2c), and reports any other value', () => {
    assert.equal(parseLabels({ 'meshd.backend': 'h2c' }).backend, 'h2c');
    assert.equal(parseLabels({ 'meshd.backend': ' http1 ' }).backend, 'http1');
    const bad = parseLabels({ 'meshd.backend': 'grpc' });
    assert.equal(bad.backend, undefined);
    assert.deepEqual(bad.problems, ['meshd.backend: "grpc" is not http1 or h2c; backends are spoken to over HTTP/1.1']);
    assert.match(parseLabels({ 'meshd.backends': 'h2c' }).problems[0]!, /meshd\.backend and/, 'the unknown-label message names it');
  });

  it('reads meshd.tls=acme, and reports any other value', () => {
    assert.equal(parseLabels({ 'meshd.tls': 'acme' }).acme, true);
    const bad = parseLabels({ 'meshd.tls': 'letsencrypt' });
    assert.equal(bad.acme, undefined);
    assert.match(bad.problems.join('\n'), /^meshd\.tls: "letsencrypt" is not supported; write acme/);
    assert.match(parseLabels({ 'meshd.tsl': 'acme' }).problems[0]!, /meshd\.tls/, 'the unknown-label message names it');
  });
});
