// compile() on snapshots built from small helpers, table-driven: input → expected routes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SwarmService, SwarmSnapshot, SwarmTask, TaskState } from '../../src/discovery/snapshot.js';
import { compile, type CompileOptions } from '../../src/table/compile.js';

const NET = { ID: 'net-meshd', Spec: { Name: 'meshd' } };
const OTHER = { ID: 'net-other', Spec: { Name: 'other' } };
const INGRESS = { ID: 'net-ingress', Spec: { Name: 'ingress' } };

function service(id: string, labels: Record<string, string>, extra: Partial<SwarmService> = {}): SwarmService {
  return { ID: id, CreatedAt: `2026-01-01T00:00:0${id.length}Z`, Spec: { Name: id, Labels: labels }, ...extra };
}
function task(id: string, serviceId: string, opts: { desired?: TaskState; state?: TaskState; addr?: string; net?: { ID: string; Spec: { Name: string } }; node?: string } = {}): SwarmTask {
  return {
    ID: id, ServiceID: serviceId, NodeID: opts.node ?? 'node-1', DesiredState: opts.desired ?? 'running', Status: { State: opts.state ?? 'running' },
    NetworksAttachments: opts.addr === undefined ? [{ Network: opts.net ?? NET, Addresses: [`10.0.1.${id.replace(/\D/g, '')}/24`] }] : opts.addr ? [{ Network: opts.net ?? NET, Addresses: [opts.addr] }] : [],
  };
}
function snapshot(services: SwarmService[], tasks: SwarmTask[]): SwarmSnapshot {
  return {
    services, tasks,
    nodes: [{ ID: 'node-1', Description: { Hostname: 'node1' } }, { ID: 'node-2', Description: { Hostname: 'node2' } }],
    networks: [{ Id: NET.ID, Name: 'meshd' }, { Id: OTHER.ID, Name: 'other' }, { Id: INGRESS.ID, Name: 'ingress' }],
  };
}
const options: CompileOptions = { defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: ['meshd'], ipvs: false };

describe('compile', () => {
  it('routes a labelled service to its running tasks on meshd\'s network', () => {
    const t = compile(snapshot(
      [service('web', { 'meshd.publish': '8080:80/http', 'meshd.health.path': '/healthz' })],
      [task('t1', 'web'), task('t2', 'web', { node: 'node-2' }), task('t3', 'web', { state: 'starting' }), task('t4', 'web', { desired: 'shutdown', state: 'shutdown' }), task('t5', 'web', { state: 'failed' })],
    ), options);
    assert.equal(t.routes.length, 1);
    const r = t.routes[0]!;
    assert.deepEqual({ name: r.name, mode: r.mode, port: r.port, path: r.health.path }, { name: 'web', mode: 'http', port: 8080, path: '/healthz' });
    assert.deepEqual(r.backends, [
      { id: 't1', host: '10.0.1.1', port: 80, node: 'node1', draining: false },
      { id: 't2', host: '10.0.1.2', port: 80, node: 'node2', draining: false },
    ]);
    assert.deepEqual(r.problems, []);
  });

  it('marks tasks whose desired state is shutdown but still run as draining', () => {
    const t = compile(snapshot([service('web', { 'meshd.publish': '80:80' })], [task('t1', 'web'), task('t2', 'web', { desired: 'shutdown' })]), options);
    assert.deepEqual(t.routes[0]!.backends.map((b) => [b.id, b.draining]), [['t1', false], ['t2', true]]);
  });

  it('keeps a route with no backends when the service is scaled to zero', () => {
    const t = compile(snapshot([service('web', { 'meshd.publish': '80:80' })], [task('t1', 'web', { desired: 'shutdown', state: 'shutdown' })]), options);
    assert.equal(t.routes.length, 1);
    assert.deepEqual(t.routes[0]!.backends, []);
  });

  it('reports a task with no address on meshd\'s network, never its ingress address', () => {
    const t = compile(snapshot([service('web', { 'meshd.publish': '80:80' })], [task('t1', 'web', { net: OTHER }), task('t2', 'web', { net: INGRESS })]), options);
    assert.deepEqual(t.routes[0]!.backends, []);
    assert.equal(t.routes[0]!.problems.length, 2);
    assert.match(t.routes[0]!.problems[0]!, /task t1 on node1 has no address on network meshd/);
    const anyNet = compile(snapshot([service('web', { 'meshd.publish': '80:80' })], [task('t1', 'web', { net: OTHER }), task('t2', 'web', { net: INGRESS })]), { ...options, selfNetworks: [] });
    assert.deepEqual(anyNet.routes[0]!.backends.map((b) => b.id), ['t1'], 'without a known network any but ingress will do');
    const flag = compile(snapshot([service('web', { 'meshd.publish': '80:80' })], [task('t1', 'web', { net: OTHER })]), { ...options, network: 'other' });
    assert.deepEqual(flag.routes[0]!.backends.map((b) => b.id), ['t1'], '--network overrides');
  });

  it('turns bad labels into problems and keeps the other services', () => {
    const t = compile(snapshot([
      service('bad', { 'meshd.publish': 'notaport' }),
      service('odd', { 'meshd.publish': '81:80', 'meshd.health.interval': 'fast', 'meshd.colour': 'red' }),
      service('good', { 'meshd.publish': '82:80' }),
    ], [task('t1', 'good'), task('t2', 'odd')]), options);
    assert.deepEqual(t.routes.map((r) => r.name), ['odd', 'good']);
    assert.equal(t.routes[0]!.health.interval, 2000, 'default used for the bad value');
    assert.match(t.routes[0]!.problems.join('\n'), /meshd.health.interval: "fast"/);
    assert.match(t.routes[0]!.problems.join('\n'), /meshd.colour: unknown label/);
    assert.deepEqual(t.notices.map((n) => n.service), ['bad']);
    assert.match(t.notices[0]!.message, /not PUBLISHED:TARGET/);
  });

  it('lets a health timeout that no label sets follow a shorter interval, silently', () => {
    const t = compile(snapshot([service('web', { 'meshd.publish': '80:80/http', 'meshd.health.path': '/', 'meshd.health.interval': '500ms' })], []), options);
    assert.deepEqual(t.routes[0]!.health, { path: '/', interval: 500, timeout: 500, rise: 2, fall: 3 });
    assert.deepEqual(t.routes[0]!.problems, []);
  });

  it('clamps a labelled health timeout above the interval and shows it on the route', () => {
    const t = compile(snapshot([
      service('web', { 'meshd.publish': '80:80', 'meshd.health.interval': '500ms', 'meshd.health.timeout': '2s' }),
      service('db', { 'meshd.publish': '81:81', 'meshd.health.timeout': '3s' }),
    ], []), options);
    const [web, db] = [t.routes.find((r) => r.name === 'web')!, t.routes.find((r) => r.name === 'db')!];
    assert.equal(web.health.timeout, 500);
    assert.deepEqual(web.problems, ['meshd.health.timeout (2000ms) exceeds the interval (500ms); the interval is used as timeout']);
    assert.equal(db.health.timeout, 2000, 'against the default interval too');
    assert.match(db.problems.join('\n'), /meshd\.health\.timeout \(3000ms\) exceeds the interval \(2000ms\)/);
  });

  it('fills per-route limits from labels: both on tcp ports, the connection cap alone on http', () => {
    const t = compile(snapshot([
      service('db', { 'meshd.publish': '5432:5432, 8080:80/http', 'meshd.max-connections': '100', 'meshd.idle-timeout': '10m' }),
      service('web', { 'meshd.publish': '81:80' }),
    ], []), options);
    const [tcp, http] = [t.routes.find((r) => r.port === 5432)!, t.routes.find((r) => r.port === 8080)!];
    assert.deepEqual([tcp.maxConnections, tcp.idleTimeout, tcp.problems], [100, 600_000, []]);
    assert.deepEqual([http.maxConnections, http.idleTimeout], [100, undefined]);
    assert.match(http.problems.join('\n'), /meshd\.idle-timeout applies to tcp ports only; port 8080 is http/);
    const web = t.routes.find((r) => r.name === 'web')!;
    assert.ok(!('maxConnections' in web) && !('idleTimeout' in web), 'no label, no per-route limit');
  });

  it('turns bad limit labels into problems on the route and serves it with the defaults', () => {
    const t = compile(snapshot([service('db', { 'meshd.publish': '5432:5432', 'meshd.max-connections': 'many', 'meshd.idle-timeout': 'never' })], [task('t1', 'db')]), options);
    const r = t.routes[0]!;
    assert.deepEqual([r.maxConnections, r.idleTimeout, r.backends.length], [undefined, undefined, 1]);
    assert.match(r.problems.join('\n'), /meshd\.max-connections: "many"/);
    assert.match(r.problems.join('\n'), /meshd\.idle-timeout: "never"/);
  });

  it('gives a contested port to the older service and reports the other', () => {
    const t = compile(snapshot([service('second', { 'meshd.publish': '90:80' }), service('a', { 'meshd.publish': '90:80' })], []), options);
    assert.deepEqual(t.routes.map((r) => r.name), ['a']);
    assert.match(t.notices[0]!.message, /not served: port 90 is already served by a/);
  });

  it('lets L7 services share a port by host', () => {
    const t = compile(snapshot([
      service('web', { 'meshd.publish': '80:80/http' }),
      service('counter', { 'meshd.publish': '80:80/http', 'meshd.hosts': 'counter.local.dev' }),
      service('clashing', { 'meshd.publish': '80:80/http', 'meshd.hosts': 'counter.local.dev' }),
    ], []), options);
    assert.deepEqual(t.routes.map((r) => [r.name, r.hosts]), [['counter', ['counter.local.dev']], ['web', []]]);
    assert.match(t.notices[0]!.message, /host counter.local.dev on port 80 is already served by counter/);
  });

  it('explains ports published the standard way, and says when IPVS is missing', () => {
    const plain = service('plain', {}, { Endpoint: { Ports: [{ Protocol: 'tcp', TargetPort: 80, PublishedPort: 8083, PublishMode: 'ingress' }] } });
    const noIpvs = compile(snapshot([plain], []), options);
    assert.equal(noIpvs.routes.length, 0);
    assert.equal(noIpvs.notices[0]!.port, 8083);
    assert.match(noIpvs.notices[0]!.message, /no IPVS/);
    assert.match(noIpvs.notices[0]!.message, /meshd.publish=8083:80/);
    assert.doesNotMatch(compile(snapshot([plain], []), { ...options, ipvs: true }).notices[0]!.message, /no IPVS/);
  });

  it('is deterministic: the same snapshot gives the same table whatever the order', () => {
    const services = [service('web', { 'meshd.publish': '80:80' }), service('db', { 'meshd.publish': '5432:5432' })];
    const tasks = [task('t1', 'web'), task('t2', 'web'), task('t3', 'db')];
    const a = compile(snapshot(services, tasks), options);
    const b = compile(snapshot([...services].reverse(), [...tasks].reverse()), options);
    assert.deepEqual(a, b);
  });

  it('serves http and https ports of one service: hosts on both, the redirect on http, HSTS on https', () => {
    const t = compile(snapshot(
      [service('site', { 'meshd.publish': '80:8080/http, 443:8080/https', 'meshd.hosts': 'a.test', 'meshd.redirect': 'https', 'meshd.hsts': 'max-age=60' })],
      [task('t1', 'site')],
    ), options);
    assert.deepEqual(t.routes.map((r) => [r.port, r.mode, r.hosts, r.redirectHttps, r.hsts, r.problems]), [
      [80, 'http', ['a.test'], 443, undefined, []],
      [443, 'https', ['a.test'], undefined, 'max-age=60', []],
    ]);
  });

  it('meshd.backend=h2c applies to the http and https ports of a service and is a problem on its tcp ones', () => {
    const t = compile(snapshot(
      [service('grpc', { 'meshd.publish': '80:50051/http, 443:50051/https, 50051:50051', 'meshd.backend': 'h2c' }), service('web', { 'meshd.publish': '8080:80/http' })],
      [task('t1', 'grpc'), task('t2', 'web')],
    ), options);
    assert.deepEqual(t.routes.map((r) => [r.name, r.port, r.backend, r.problems]), [
      ['grpc', 80, 'h2c', []],
      ['grpc', 443, 'h2c', []],
      ['web', 8080, undefined, []],
      ['grpc', 50051, undefined, ['meshd.backend=h2c applies to /http and /https ports only; port 50051 is tcp and pipes bytes']],
    ]);
  });

  it('meshd.tls=acme marks the https ports of a service with hosts, and is a problem without hosts or https', () => {
    const t = compile(snapshot([
      service('web', { 'meshd.publish': '80:8080/http,443:8080/https', 'meshd.hosts': 'www.a.test', 'meshd.tls': 'acme' }),
      service('nohosts', { 'meshd.publish': '8443:80/https', 'meshd.tls': 'acme' }),
      service('plain', { 'meshd.publish': '8080:80/http', 'meshd.hosts': 'p.test', 'meshd.tls': 'acme' }),
    ], [task('t1', 'web'), task('t2', 'nohosts'), task('t3', 'plain')]), options);
    const route = (name: string, port: number) => t.routes.find((r) => r.name === name && r.port === port)!;
    assert.equal(route('web', 443).acme, true);
    assert.deepEqual(route('web', 443).problems, []);
    assert.equal(route('web', 80).acme, undefined);
    assert.deepEqual(route('web', 80).problems, [], 'the plain-HTTP port of an ACME service is no mistake');
    assert.equal(route('nohosts', 8443).acme, undefined);
    assert.match(route('nohosts', 8443).problems.join('\n'), /meshd\.tls=acme needs meshd\.hosts/);
    assert.equal(route('plain', 8080).acme, undefined);
    assert.match(route('plain', 8080).problems.join('\n'), /meshd\.tls=acme applies to \/https ports only; port 8080 is http/);
  });

  it('lets L7 services share a host by path prefix, and reports a prefix two services claim', () => {
    const t = compile(snapshot([
      service('site', { 'meshd.publish': '80:80/http', 'meshd.hosts': 'a.test' }),
      service('api', { 'meshd.publish': '80:80/http', 'meshd.hosts': 'a.test,b.test', 'meshd.paths': '/api, /v2/', 'meshd.strip-prefix': 'true' }),
      service('clash', { 'meshd.publish': '80:80/http', 'meshd.hosts': 'b.test', 'meshd.paths': '/v2' }),
      service('static', { 'meshd.publish': '80:80/http', 'meshd.paths': '/static' }),
    ], []), options);
    assert.deepEqual(t.routes.map((r) => [r.name, r.hosts, r.paths, r.stripPrefix]), [
      ['api', ['a.test', 'b.test'], ['/api', '/v2'], true],
      ['site', ['a.test'], undefined, undefined],
      ['static', [], ['/static'], undefined],
    ]);
    assert.deepEqual(t.notices.map((n) => n.message), ['not served: path /v2 of host b.test on port 80 is already served by api']);
  });

  it('turns routing labels into the route spec, and misplaced or malformed ones into problems', () => {
    const t = compile(snapshot([
      service('web', { 'meshd.publish': '80:80/http,9000:9000', 'meshd.lb': 'least-conn', 'meshd.sticky': 'cookie:SID', 'meshd.paths': '/x' }),
      service('odd', { 'meshd.publish': '81:80/http', 'meshd.lb': 'random', 'meshd.sticky': 'yes', 'meshd.paths': 'nope,/a/../b', 'meshd.strip-prefix': 'true' }),
    ], []), options);
    const web = t.routes.find((r) => r.name === 'web' && r.port === 80)!;
    assert.deepEqual([web.lb, web.sticky, web.paths], ['least-conn', { cookie: 'SID' }, ['/x']]);
    const tcp = t.routes.find((r) => r.name === 'web' && r.port === 9000)!;
    assert.deepEqual([tcp.lb, tcp.sticky, tcp.paths], ['least-conn', undefined, undefined]);
    assert.match(tcp.problems.join('\n'), /meshd\.paths applies to \/http and \/https ports only; port 9000 is tcp/);
    assert.match(tcp.problems.join('\n'), /meshd\.sticky applies to \/http and \/https ports only/);
    const odd = t.routes.find((r) => r.name === 'odd')!;
    assert.deepEqual([odd.lb, odd.sticky, odd.paths, odd.stripPrefix], [undefined, undefined, undefined, undefined]);
    for (const m of [/meshd\.lb: "random" is not one of round-robin, least-conn, p2c, source-hash/, /meshd\.sticky: "yes" is not cookie or cookie:NAME/,
      /meshd\.paths: "nope" is not a path prefix/, /meshd\.paths: "\/a\/\.\.\/b" is not a path prefix/, /meshd\.strip-prefix needs meshd\.paths/]) {
      assert.match(odd.problems.join('\n'), m);
    }
  });

  it('--domain gives HTTP routes without hosts <service>.<domain>, also without the stack prefix; explicit hosts win', () => {
    const stack = { 'com.docker.stack.namespace': 'demo' };
    const t = compile(snapshot([
      { ...service('demo_counter', { 'meshd.publish': '80:80/http', ...stack }) },
      service('whoami', { 'meshd.publish': '80:80/http,5000:5000' }),
      service('named', { 'meshd.publish': '80:80/http', 'meshd.hosts': 'shop.example' }),
    ], []), { ...options, domain: 'local.dev' });
    assert.deepEqual(t.routes.map((r) => [r.name, r.port, r.hosts]), [
      ['demo_counter', 80, ['counter.local.dev', 'demo_counter.local.dev']],
      ['named', 80, ['shop.example']],
      ['whoami', 80, ['whoami.local.dev']],
      ['whoami', 5000, []],
    ]);
    assert.deepEqual(compile(snapshot([service('whoami', { 'meshd.publish': '80:80/http' })], []), options).routes[0]!.hosts, [], 'no domain, no host');
  });
});
