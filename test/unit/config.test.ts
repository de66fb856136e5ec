import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, helpText, parseConfig } from '../../src/config.js';

describe('config', () => {
  it('has defaults for every flag', () => {
    const c = parseConfig([], {});
    assert.notEqual(c, 'help');
    if (c === 'help') return;
    assert.equal(c.provider, 'swarm');
    assert.deepEqual(c.adminAddr, { host: '127.0.0.1', port: 9900 });
    assert.equal(c.taskPollInterval, 1000);
    assert.equal(c.resyncInterval, 10_000);
    assert.equal(c.healthInterval, 2000);
  });

  it('takes flags in both forms, env as MESHD_*, and the command line over env', () => {
    const c = parseConfig(['--health-interval=500ms', '--log-level', 'debug', '--admin-addr', '[::1]:9000'], { MESHD_LOG_LEVEL: 'warn', MESHD_NETWORK: 'meshd' });
    if (c === 'help') throw new Error('help');
    assert.equal(c.healthInterval, 500);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.network, 'meshd');
    assert.deepEqual(c.adminAddr, { host: '::1', port: 9000 });
  });

  it('has ACME defaults, and takes each ACME flag', () => {
    const d = parseConfig([], {});
    if (d === 'help') throw new Error('help');
    assert.equal(d.acmeDirectory, 'https://acme-v02.api.letsencrypt.org/directory');
    assert.equal(d.acmeStorage, '/var/lib/meshd/acme');
    assert.equal(d.acmeEmail, undefined);
    assert.equal(d.acmeCaFile, undefined);
    const c = parseConfig(['--acme-email', 'ops@example.com', '--acme-directory=https://127.0.0.1:14000/dir', '--acme-ca-file', '/ca.pem'], { MESHD_ACME_STORAGE: '/data/acme' });
    if (c === 'help') throw new Error('help');
    assert.deepEqual([c.acmeEmail, c.acmeDirectory, c.acmeCaFile, c.acmeStorage], ['ops@example.com', 'https://127.0.0.1:14000/dir', '/ca.pem', '/data/acme']);
    for (const flag of ['--acme-email', '--acme-directory', '--acme-ca-file', '--acme-storage']) assert.match(helpText(), new RegExp(flag));
  });

  it('takes --workers as auto (the CPUs meshd may use) or a count', () => {
    const d = parseConfig([], {});
    if (d === 'help') throw new Error('help');
    assert.ok(d.workers >= 1);
    const c = parseConfig(['--workers', '4'], {});
    if (c === 'help') throw new Error('help');
    assert.equal(c.workers, 4);
    for (const bad of ['0', '-1', '2.5', 'many', '257']) assert.throws(() => parseConfig(['--workers', bad], {}), /--workers: must be auto or a whole number/);
  });

  it('takes --domain as a lower-case DNS name, and refuses anything else', () => {
    const c = parseConfig(['--domain', 'Local.Dev.'], {});
    if (c === 'help') throw new Error('help');
    assert.equal(c.domain, 'local.dev');
    const none = parseConfig([], {});
    assert.equal(none === 'help' ? 'help' : none.domain, undefined);
    for (const bad of ['local dev', '*.local.dev', 'a..b', '-a.dev']) assert.throws(() => parseConfig(['--domain', bad], {}), /--domain: .* is not a DNS name/);
  });

  it('has --compat off and the usual Traefik entrypoints by default', () => {
    const c = parseConfig([], {});
    if (c === 'help') throw new Error('help');
    assert.deepEqual(c.compat, []);
    assert.deepEqual(c.compatEntrypoint, { web: { port: 80 }, websecure: { port: 443 } });
    for (const flag of ['--compat ', '--compat-entrypoint']) assert.match(helpText(), new RegExp(flag));
  });

  it('takes --compat and --compat-entrypoint, also as MESHD_COMPAT and MESHD_COMPAT_ENTRYPOINT', () => {
    const c = parseConfig(['--compat', 'traefik, dockercloud,traefik', '--compat-entrypoint=http=8080,https=8443/https'], {});
    if (c === 'help') throw new Error('help');
    assert.deepEqual(c.compat, ['traefik', 'dockercloud']);
    assert.deepEqual(c.compatEntrypoint, { http: { port: 8080 }, https: { port: 8443, mode: 'https' } });
    const e = parseConfig([], { MESHD_COMPAT: 'dockercloud', MESHD_COMPAT_ENTRYPOINT: 'web=81' });
    if (e === 'help') throw new Error('help');
    assert.deepEqual([e.compat, e.compatEntrypoint], [['dockercloud'], { web: { port: 81 } }]);
    const none = parseConfig(['--compat='], {});
    if (none === 'help') throw new Error('help');
    assert.deepEqual(none.compat, []);
  });

  const bad: [string[], Record<string, string>, RegExp][] = [
    [['--compat', 'nginx'], {}, /^--compat: "nginx" is not one of traefik, dockercloud/],
    [[], { MESHD_COMPAT: 'traefik,haproxy' }, /^--compat: "haproxy" is not one of/],
    [['--compat-entrypoint', 'web:80'], {}, /^--compat-entrypoint: "web:80" is not NAME=PORT/],
    [['--compat-entrypoint', 'web=80,web=443'], {}, /^--compat-entrypoint: entrypoint web is listed twice/],
    [['--health-interval', 'soon'], {}, /^--health-interval: must be a duration/],
    [['--provider', 'consul'], {}, /^--provider: must be one of swarm, file/],
    [['--provider', 'file'], {}, /^--routes: required/],
    [['--health-rise', '0'], {}, /^--health-rise: must be a whole number/],
    [['--admin-addr', '9900'], {}, /^--admin-addr: must be HOST:PORT/],
    [['--metrics-detail-max', 'all'], {}, /^--metrics-detail-max: must be a whole number from 0 to 100000000/],
    [['--bogus'], {}, /unknown argument "--bogus"/],
    [['--network'], {}, /^--network: needs a value/],
    [[], { MESHD_DRAIN_TIMEOUT: '-1s' }, /^--drain-timeout/],
    [['--health-timeout', '5s'], {}, /^--health-timeout: must not exceed/],
  ];
  for (const [argv, env, re] of bad) {
    it(`refuses ${JSON.stringify(argv)} ${JSON.stringify(env)}`, () => {
      assert.throws(() => parseConfig(argv, env), (err: Error) => err instanceof ConfigError && re.test(err.message) && !err.message.includes('\n'));
    });
  }

  it('answers --help with every flag', () => {
    assert.equal(parseConfig(['--help'], {}), 'help');
    for (const flag of ['--provider', '--routes', '--docker-host', '--network', '--admin-addr', '--drain-timeout']) assert.match(helpText(), new RegExp(flag));
  });
});
