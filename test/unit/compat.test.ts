// --compat: Traefik labels and dockercloud/haproxy environment → meshd routes,
// table-driven through compile(): input labels or env → expected routes and problems.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SwarmService, SwarmSnapshot } from '../../src/discovery/snapshot.js';
import { parseEntrypoints, parseRule, ruleSets, type CompatOptions } from '../../src/table/compat.js';
import { compile, type CompileOptions } from '../../src/table/compile.js';
import type { RoutingTable } from '../../src/table/spec.js';

const NET = { ID: 'net-meshd', Spec: { Name: 'meshd' } };
const ENTRYPOINTS = { web: { port: 80 }, websecure: { port: 443 } };
const COMPAT: CompatOptions = { kinds: ['traefik', 'dockercloud'], entrypoints: ENTRYPOINTS };
const base: CompileOptions = { defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: ['meshd'], ipvs: false };
const options: CompileOptions = { ...base, compat: COMPAT };

function service(name: string, labels: Record<string, string>, env?: string[], stack?: string): SwarmService {
  return {
    ID: `id-${name}`, CreatedAt: '2026-01-01T00:00:00Z',
    Spec: { Name: name, Labels: { ...labels, ...(stack ? { 'com.docker.stack.namespace': stack } : {}) }, ...(env ? { TaskTemplate: { ContainerSpec: { Env: env } } } : {}) },
  };
}
function snapshot(services: SwarmService[]): SwarmSnapshot {
  return {
    services,
    tasks: services.map((s, i) => ({ ID: `t${i}`, ServiceID: s.ID, NodeID: 'n1', DesiredState: 'running', Status: { State: 'running' }, NetworksAttachments: [{ Network: NET, Addresses: [`10.0.1.${i + 2}/24`] }] })),
    nodes: [{ ID: 'n1', Description: { Hostname: 'node1' } }],
    networks: [{ Id: NET.ID, Name: 'meshd' }],
  };
}

/** A route as the cases write it: `name mode port→target`, plus what it sets beyond that. */
function summary(t: RoutingTable) {
  return t.routes.map((r) => ({
    route: `${r.name} ${r.mode} ${r.port}→${r.backends[0]?.port}`,
    ...(r.hosts.length ? { hosts: r.hosts } : {}),
    ...(r.paths ? { paths: r.paths } : {}),
    ...(r.stripPrefix ? { strip: true } : {}),
    ...(r.lb ? { lb: r.lb } : {}),
    ...(r.sticky ? { sticky: r.sticky.cookie } : {}),
    ...(r.acme ? { acme: true } : {}),
    ...(r.redirectHttps ? { redirect: r.redirectHttps } : {}),
    ...(r.hsts ? { hsts: r.hsts } : {}),
    ...(r.health.path ? { check: r.health.path } : {}),
  }));
}
const said = (t: RoutingTable) => [...t.notices.map((n) => `${n.service}: ${n.message}`), ...t.routes.flatMap((r) => r.problems.map((p) => `${r.name}: ${p}`))].join('\n');

interface Case {
  name: string;
  labels?: Record<string, string>;
  env?: string[];
  options?: Partial<CompileOptions>;
  routes: ReturnType<typeof summary>;
  /** Problems or notices that must be said (each regex), or exactly none when absent. */
  says?: RegExp[];
}

const cases: Case[] = [
  // Traefik v1
  { name: 'v1: traefik.port alone opts in, on port 80 for any host', labels: { 'traefik.port': '8080' }, routes: [{ route: 'app http 80→8080' }] },
  { name: 'v1: Host with two names', labels: { 'traefik.port': '80', 'traefik.frontend.rule': 'Host:a.test,B.test' }, routes: [{ route: 'app http 80→80', hosts: ['a.test', 'b.test'] }] },
  { name: 'v1: PathPrefix', labels: { 'traefik.port': '80', 'traefik.frontend.rule': 'PathPrefix:/api,/static/' }, routes: [{ route: 'app http 80→80', paths: ['/api', '/static'] }] },
  { name: 'v1: Host;PathPrefix combined', labels: { 'traefik.port': '80', 'traefik.frontend.rule': 'Host:a.test;PathPrefix:/p' }, routes: [{ route: 'app http 80→80', hosts: ['a.test'], paths: ['/p'] }] },
  { name: 'v1: PathPrefixStrip strips', labels: { 'traefik.port': '80', 'traefik.frontend.rule': 'PathPrefixStrip:/p' }, routes: [{ route: 'app http 80→80', paths: ['/p'], strip: true }] },
  {
    name: 'v1: stickiness, cookie name, drr and health check',
    labels: { 'traefik.port': '80', 'traefik.backend.loadbalancer.stickiness': 'true', 'traefik.backend.loadbalancer.stickiness.cookieName': 'SRV', 'traefik.backend.loadbalancer.method': 'drr', 'traefik.backend.healthcheck.path': '/health' },
    routes: [{ route: 'app http 80→80', lb: 'least-conn', sticky: 'SRV', check: '/health' }],
  },
  { name: 'v1: stickiness alone uses meshd\'s cookie; wrr is round-robin', labels: { 'traefik.port': '80', 'traefik.backend.loadbalancer.stickiness': 'true', 'traefik.backend.loadbalancer.method': 'wrr' }, routes: [{ route: 'app http 80→80', sticky: 'meshd_sticky' }] },
  { name: 'v1: traefik.enable=false opts out', labels: { 'traefik.enable': 'false', 'traefik.port': '80' }, routes: [] },
  {
    name: 'v1: unknown matcher, method and label are problems',
    labels: { 'traefik.port': '80', 'traefik.frontend.rule': 'Host:a.test;Method:GET', 'traefik.backend.loadbalancer.method': 'random', 'traefik.frontend.auth.basic': 'u:p', 'traefik.api.port': '81' },
    routes: [{ route: 'app http 80→80', hosts: ['a.test'] }],
    says: [/frontend.rule: Method is not supported by meshd.*answers without that condition/, /method: "random" is not wrr or drr; round-robin is used/, /traefik.frontend.auth.basic: not mapped/, /traefik.api.port: Traefik v1 segments are not mapped/],
  },
  { name: 'v1: a bad port is a notice, nothing served', labels: { 'traefik.port': 'http' }, routes: [], says: [/traefik.port: "http" is not a port/, /traefik.port: missing/] },
  { name: 'traefik.enable=true without a port is a notice', labels: { 'traefik.enable': 'true' }, routes: [], says: [/no port to route to/] },

  // Traefik v2/v3
  {
    name: 'v2: Host and the only service\'s port',
    labels: { 'traefik.http.routers.web.rule': 'Host(`a.test`)', 'traefik.http.services.web-svc.loadbalancer.server.port': '8080' },
    routes: [{ route: 'app http 80→8080', hosts: ['a.test'] }],
  },
  {
    name: 'v2: multi-argument Host and PathPrefix with &&',
    labels: { 'traefik.http.routers.web.rule': 'Host(`a.test`, "b.test") && PathPrefix(`/api`)', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [{ route: 'app http 80→80', hosts: ['a.test', 'b.test'], paths: ['/api'] }],
  },
  {
    name: 'v2: || of hosts is one set',
    labels: { 'traefik.http.routers.web.rule': 'Host(`a.test`) || Host(`b.test`)', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [{ route: 'app http 80→80', hosts: ['a.test', 'b.test'] }],
  },
  {
    name: 'v2: parentheses distribute && over ||',
    labels: { 'traefik.http.routers.web.rule': 'Host(`a.test`) && (PathPrefix(`/x`) || PathPrefix(`/y`))', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [{ route: 'app http 80→80', hosts: ['a.test'], paths: ['/x', '/y'] }],
  },
  {
    name: 'v2: a union that is no product becomes two sets',
    labels: { 'traefik.http.routers.web.rule': '(Host(`a.test`) && PathPrefix(`/api`)) || Host(`b.test`)', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [{ route: 'app@web http 80→80', hosts: ['a.test'], paths: ['/api'] }, { route: 'app@web-2 http 80→80', hosts: ['b.test'] }],
  },
  {
    name: 'v2: several routers, each picks its service',
    labels: {
      'traefik.http.routers.api.rule': 'Host(`a.test`) && PathPrefix(`/api`)', 'traefik.http.routers.api.service': 'api',
      'traefik.http.routers.ui.rule': 'Host(`a.test`)', 'traefik.http.routers.ui.service': 'ui@docker',
      'traefik.http.services.api.loadbalancer.server.port': '3000', 'traefik.http.services.ui.loadbalancer.server.port': '8080',
    },
    routes: [{ route: 'app@api http 80→3000', hosts: ['a.test'], paths: ['/api'] }, { route: 'app@ui http 80→8080', hosts: ['a.test'] }],
  },
  {
    name: 'v2: several services and no .service is a notice',
    labels: { 'traefik.http.routers.r.rule': 'Host(`a.test`)', 'traefik.http.services.one.loadbalancer.server.port': '1', 'traefik.http.services.two.loadbalancer.server.port': '2' },
    routes: [], says: [/several services are defined \(one, two\).*not served/],
  },
  {
    name: 'v2: sticky cookie, and its name',
    labels: { 'traefik.http.routers.r.rule': 'Host(`a.test`)', 'traefik.http.services.s.loadbalancer.server.port': '80', 'traefik.http.services.s.loadbalancer.sticky.cookie': 'true', 'traefik.http.services.s.loadbalancer.sticky.cookie.name': 'SID' },
    routes: [{ route: 'app http 80→80', hosts: ['a.test'], sticky: 'SID' }],
  },
  {
    name: 'v2: sticky.cookie=true alone',
    labels: { 'traefik.http.services.s.loadbalancer.server.port': '80', 'traefik.http.services.s.loadbalancer.sticky.cookie': 'true' },
    routes: [{ route: 'app http 80→80', sticky: 'meshd_sticky' }],
  },
  {
    name: 'v2: websecure with a certresolver is https with ACME; web is http',
    labels: {
      'traefik.http.routers.secure.rule': 'Host(`a.test`)', 'traefik.http.routers.secure.entrypoints': 'websecure', 'traefik.http.routers.secure.tls.certresolver': 'le',
      'traefik.http.routers.plain.rule': 'Host(`a.test`)', 'traefik.http.routers.plain.entrypoints': 'web',
      'traefik.http.services.s.loadbalancer.server.port': '8080',
    },
    routes: [{ route: 'app@plain http 80→8080', hosts: ['a.test'] }, { route: 'app@secure https 443→8080', hosts: ['a.test'], acme: true }],
  },
  {
    name: 'v2: tls=true without a resolver is https from files',
    labels: { 'traefik.http.routers.r.rule': 'Host(`a.test`)', 'traefik.http.routers.r.entrypoints': 'websecure', 'traefik.http.routers.r.tls': 'true', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [{ route: 'app https 443→80', hosts: ['a.test'] }],
  },
  {
    name: 'v2: --compat-entrypoint names the ports',
    labels: { 'traefik.http.routers.r.rule': 'Host(`a.test`)', 'traefik.http.routers.r.entrypoints': 'public,nowhere', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    options: { compat: { kinds: ['traefik'], entrypoints: { public: { port: 8000 } } } },
    routes: [{ route: 'app http 8000→80', hosts: ['a.test'] }],
    says: [/entrypoint nowhere is not in --compat-entrypoint \(public\); the router is not served on it/],
  },
  {
    name: 'v2: redirectscheme and stripprefix middlewares',
    labels: {
      'traefik.http.routers.r.rule': 'Host(`a.test`) && PathPrefix(`/app`)', 'traefik.http.routers.r.middlewares': 'to-https,strip@docker',
      'traefik.http.middlewares.to-https.redirectscheme.scheme': 'https', 'traefik.http.middlewares.strip.stripprefix.prefixes': '/app',
      'traefik.http.services.s.loadbalancer.server.port': '80',
    },
    routes: [{ route: 'app http 80→80', hosts: ['a.test'], paths: ['/app'], strip: true, redirect: 443 }],
  },
  {
    name: 'v2: unsupported matchers, middlewares and labels are problems',
    labels: {
      'traefik.http.routers.r.rule': 'Host(`a.test`) && Headers(`X-A`, `1`) || Path(`/exact`) && Host(`b.test`) || Method(`GET`)',
      'traefik.http.routers.r.middlewares': 'auth', 'traefik.http.middlewares.auth.basicauth.users': 'u:h', 'traefik.http.routers.r.priority': '10',
      'traefik.http.services.s.loadbalancer.server.port': '80', 'traefik.http.services.s.loadbalancer.server.scheme': 'https',
      'traefik.tcp.routers.db.rule': 'HostSNI(`*`)', 'traefik.docker.network': 'meshd',
    },
    routes: [{ route: 'app@r http 80→80', hosts: ['a.test'] }, { route: 'app@r-2 http 80→80', hosts: ['b.test'], paths: ['/exact'] }],
    says: [
      /Headers\(`X-A`, `1`\) is not supported by meshd; the route answers without that condition/,
      /Path\(`\/exact`\): meshd matches path prefixes, not exact paths; served as PathPrefix/,
      /Method\(`GET`\) is not supported by meshd.*that alternative is not served/,
      /traefik.http.middlewares.auth.basicauth.users: meshd has no such middleware; requests are forwarded without it/,
      /priority: meshd picks the longest matching path prefix/,
      /server.scheme: not mapped by meshd/,
      /traefik.tcp.routers.db.rule: Traefik TCP routers are not mapped/,
    ],
  },
  {
    name: 'v2: a rule meshd cannot read is a notice, never a crash',
    labels: { 'traefik.http.routers.r.rule': 'Host(`a.test` && ', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [], says: [/rule: "Host\(`a.test` && " cannot be read \(expected "\)" at 15\); the router is not served/],
  },
  {
    name: 'v2: a wildcard host is left out',
    labels: { 'traefik.http.routers.r.rule': 'Host(`*.a.test`, `b.test`)', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [{ route: 'app http 80→80', hosts: ['b.test'] }], says: [/"\*\.a\.test" is not a host name meshd matches/],
  },
  {
    name: 'v2: a v1 label next to v2 labels is ignored',
    labels: { 'traefik.port': '9999', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    routes: [{ route: 'app http 80→80' }], says: [/traefik.port: a Traefik v1 label next to v2 labels; ignored/],
  },
  {
    name: 'v2: a router without a port is a notice',
    labels: { 'traefik.http.routers.r.rule': 'Host(`a.test`)' },
    routes: [], says: [/router r: no target port/],
  },

  // dockercloud/haproxy
  { name: 'dockercloud: SERVICE_PORTS alone is port 80\'s default', env: ['SERVICE_PORTS=8080', 'PATH=/bin'], routes: [{ route: 'app http 80→8080' }] },
  {
    name: 'dockercloud: VIRTUAL_HOST forms',
    env: ['SERVICE_PORTS=80', 'VIRTUAL_HOST=a.test, http://b.test, https://c.test, d.test:8080, e.test/static/*, *.w.test'],
    routes: [
      { route: 'app@http http 80→80', hosts: ['a.test', 'b.test'] },
      { route: 'app@http-2 http 80→80', hosts: ['e.test'], paths: ['/static'] },
      { route: 'app@http-3 https 443→80', hosts: ['c.test'] },
      { route: 'app@http-4 http 8080→80', hosts: ['d.test'] },
    ],
    says: [/VIRTUAL_HOST: "\*\.w\.test" is a wildcard host, which meshd does not match/],
  },
  {
    name: 'dockercloud: one host on http and https is one set on two ports',
    env: ['SERVICE_PORTS=80', 'VIRTUAL_HOST=a.test,https://a.test', 'FORCE_SSL=yes', 'HSTS=true'],
    routes: [{ route: 'app http 80→80', hosts: ['a.test'], redirect: 443 }, { route: 'app https 443→80', hosts: ['a.test'], hsts: 'max-age=31536000' }],
  },
  {
    name: 'dockercloud: TCP_PORTS on the same published port, BALANCE',
    env: ['SERVICE_PORTS=80,9000', 'TCP_PORTS=9000', 'BALANCE=leastconn'],
    routes: [{ route: 'app@http http 80→80', lb: 'least-conn' }, { route: 'app@tcp tcp 9000→9000', lb: 'least-conn' }],
  },
  { name: 'dockercloud: BALANCE=source', env: ['SERVICE_PORTS=80', 'BALANCE=source'], routes: [{ route: 'app http 80→80', lb: 'source-hash' }] },
  { name: 'dockercloud: BALANCE=roundrobin', env: ['SERVICE_PORTS=80', 'BALANCE=roundrobin'], routes: [{ route: 'app http 80→80' }] },
  {
    name: 'dockercloud: unmapped variables and values are problems',
    env: ['SERVICE_PORTS=80,81', 'BALANCE=static-rr', 'SSL_CERT=xyz', 'GZIP_COMPRESSION_TYPE=text/html', 'COOKIE=SRV insert indirect', 'HTTP_CHECK=GET /up', 'HEALTH_CHECK=check inter 500ms rise 1 port 81'],
    routes: [{ route: 'app http 80→80', sticky: 'SRV', check: '/up' }],
    says: [/BALANCE: "static-rr" is not roundrobin, leastconn or source/, /SSL_CERT: not mapped.*--tls-dir/, /GZIP_COMPRESSION_TYPE: not mapped/, /several HTTP ports \(80, 81\)/, /HEALTH_CHECK: "port" is not mapped/],
  },
  { name: 'dockercloud: VIRTUAL_HOST without SERVICE_PORTS is a notice', env: ['VIRTUAL_HOST=a.test'], routes: [], says: [/VIRTUAL_HOST: set without SERVICE_PORTS/] },

  // meshd labels win; compat is opt-in
  {
    name: 'meshd.publish wins over Traefik labels and dockercloud env',
    labels: { 'meshd.publish': '8080:80/http', 'traefik.port': '3000' }, env: ['SERVICE_PORTS=3000'],
    routes: [{ route: 'app http 8080→80' }], says: [/traefik.port, SERVICE_PORTS: ignored, as the service has meshd.publish/],
  },
  {
    name: 'meshd.health labels apply to a compat route',
    labels: { 'traefik.port': '80', 'meshd.health.path': '/ready' },
    routes: [{ route: 'app http 80→80', check: '/ready' }],
  },
  { name: 'without --compat Traefik labels are ignored', labels: { 'traefik.port': '80', 'traefik.frontend.rule': 'Host:a.test' }, env: ['SERVICE_PORTS=80'], options: { compat: undefined }, routes: [] },
  { name: '--compat traefik leaves dockercloud env alone', env: ['SERVICE_PORTS=80'], options: { compat: { kinds: ['traefik'], entrypoints: ENTRYPOINTS } }, routes: [] },
  { name: '--compat dockercloud leaves Traefik labels alone', labels: { 'traefik.port': '80' }, options: { compat: { kinds: ['dockercloud'], entrypoints: ENTRYPOINTS } }, routes: [] },

  // --domain
  { name: '--domain: traefik.port alone answers <service>.<domain>', labels: { 'traefik.port': '80' }, options: { domain: 'example.com' }, routes: [{ route: 'app http 80→80', hosts: ['app.example.com'] }] },
  {
    name: '--domain: a rule with Host gets no domain host',
    labels: { 'traefik.http.routers.r.rule': 'Host(`a.test`) && PathPrefix(`/p`)', 'traefik.http.services.s.loadbalancer.server.port': '80' },
    options: { domain: 'example.com' }, routes: [{ route: 'app http 80→80', hosts: ['a.test'], paths: ['/p'] }],
  },
];

describe('compat', () => {
  for (const c of cases) {
    it(c.name, () => {
      const t = compile(snapshot([service('app', c.labels ?? {}, c.env)]), { ...options, ...c.options });
      assert.deepEqual(summary(t), c.routes);
      const text = said(t);
      if (c.says) for (const re of c.says) assert.match(text, re);
      else assert.equal(text, '');
    });
  }

  it('each route lists the labels or variables it came from', () => {
    const t = compile(snapshot([
      service('tr', { 'traefik.http.routers.r.rule': 'Host(`a.test`)', 'traefik.http.services.s.loadbalancer.server.port': '80', 'other.label': 'x' }),
      service('dc', {}, ['SERVICE_PORTS=80', 'VIRTUAL_HOST=b.test', 'BALANCE=source', 'HOME=/root']),
      service('own', { 'meshd.publish': '81:80/http' }),
    ]), options);
    const from = Object.fromEntries(t.routes.map((r) => [r.name, r.from]));
    assert.deepEqual(from, {
      tr: ['traefik.http.routers.r.rule', 'traefik.http.services.s.loadbalancer.server.port'],
      dc: ['SERVICE_PORTS', 'VIRTUAL_HOST', 'BALANCE'],
      own: undefined,
    });
  });

  it('a Traefik service on a host another service holds is a clash notice, not a second route', () => {
    const t = compile(snapshot([
      service('first', { 'meshd.publish': '80:80/http', 'meshd.hosts': 'a.test' }),
      { ...service('second', { 'traefik.http.routers.r.rule': 'Host(`a.test`)', 'traefik.http.services.s.loadbalancer.server.port': '80' }), CreatedAt: '2026-01-02T00:00:00Z' },
    ]), options);
    assert.deepEqual(t.routes.map((r) => r.name), ['first']);
    assert.match(said(t), /second: not served: host a.test on port 80 is already served by first/);
  });
});

describe('Traefik rule parser', () => {
  const sets = (rule: string) => {
    const problems: string[] = [];
    return { sets: ruleSets('rule', rule, problems), problems };
  };
  const table: [string, { hosts: string[] | null; paths: string[] | null }[] | undefined][] = [
    ['Host(`a`)', [{ hosts: ['a'], paths: null }]],
    ['Host(`a`) && Host(`b`)', undefined],
    ['PathPrefix(`/a`) && PathPrefix(`/a/b`)', [{ hosts: null, paths: ['/a/b'] }]],
    ['(Host(`a`) || Host(`b`)) && (PathPrefix(`/x`) || PathPrefix(`/y`))', [{ hosts: ['a', 'b'], paths: ['/x', '/y'] }]],
    ['Host(`a`) || PathPrefix(`/x`)', [{ hosts: ['a'], paths: null }, { hosts: null, paths: ['/x'] }]],
    ['((Host("a")))', [{ hosts: ['a'], paths: null }]],
    ['Host(`a`) && !PathPrefix(`/x`)', [{ hosts: ['a'], paths: null }]],
    ['HostHeader(`a`)', [{ hosts: ['a'], paths: null }]],
  ];
  for (const [rule, want] of table) {
    it(rule, () => assert.deepEqual(sets(rule).sets, want));
  }

  it('says what it cannot read, with the place', () => {
    for (const [rule, re] of [
      ['Host(`a`', /expected "\)" at the end/],
      ['Host(a)', /expected a quoted value in Host\(\.\.\.\) at 6/],
      ['Host(`a`) & Host(`b`)', /unexpected "&" at 11/],
      ['Host(`a) ', /unterminated string at 6/],
      ['Host(`a`) Host(`b`)', /unexpected "Host" at 11/],
    ] as const) {
      const { sets: s, problems } = sets(rule);
      assert.equal(s, undefined);
      assert.match(problems.join('\n'), re, rule);
    }
    assert.throws(() => parseRule('||'));
  });

  it('stops an expansion that would blow up', () => {
    const rule = Array.from({ length: 8 }, (_, i) => `(Host(\`a\`) || Method(\`M${i}\`))`).join(' && ');
    const { sets: s, problems } = sets(rule);
    assert.equal(s, undefined);
    assert.match(problems.join('\n'), /more than 64 alternatives/);
    assert.deepEqual(sets('PathPrefix(`/a`) && PathPrefix(`/b`)').problems.length, 2, 'one "never matches", one "nothing to serve"');
  });
});

describe('--compat-entrypoint values', () => {
  it('reads NAME=PORT[/mode] lists', () => {
    assert.deepEqual(parseEntrypoints('web=80, websecure=443/https'), { web: { port: 80 }, websecure: { port: 443, mode: 'https' } });
    assert.match(parseEntrypoints('web:80') as string, /not NAME=PORT/);
    assert.match(parseEntrypoints('web=0') as string, /not NAME=PORT/);
    assert.match(parseEntrypoints('web=80,web=81') as string, /listed twice/);
  });

  it('an entrypoint fixed to /http serves a TLS router as http, and says so', () => {
    const t = compile(snapshot([service('app', { 'traefik.http.routers.r.rule': 'Host(`a.test`)', 'traefik.http.routers.r.entrypoints': 'web', 'traefik.http.routers.r.tls': 'true', 'traefik.http.services.s.loadbalancer.server.port': '80' })]),
      { ...options, compat: { kinds: ['traefik'], entrypoints: { web: { port: 80, mode: 'http' } } } });
    assert.deepEqual(summary(t), [{ route: 'app http 80→80', hosts: ['a.test'] }]);
    assert.match(said(t), /entrypoint web is plain http/);
  });
});
