// compile() with --compat on a snapshot in the engine's own JSON shape
// (test/fixtures/swarm/compat.json, see its README): a whoami service with
// traefik.port, an app with dockercloud/haproxy's SERVICE_PORTS, and a
// Redis-backed counter with Traefik v2 labels.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SwarmSnapshot } from '../../src/discovery/snapshot.js';
import { compile, type CompileOptions } from '../../src/table/compile.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/swarm');
const snapshot = (): SwarmSnapshot => JSON.parse(fs.readFileSync(path.join(FIXTURES, 'compat.json'), 'utf8'));
const options: CompileOptions = {
  defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: ['meshd'], ipvs: false,
  compat: { kinds: ['traefik', 'dockercloud'], entrypoints: { web: { port: 80 }, websecure: { port: 443 } } },
};

/** Running task IDs of a service and their addresses on meshd's network, straight from the JSON. */
function tasksOf(s: SwarmSnapshot, name: string): { id: string; host: string }[] {
  const svc = s.services.find((x) => x.Spec.Name === name);
  assert.ok(svc, `fixture has service ${name}`);
  return s.tasks
    .filter((t) => t.ServiceID === svc.ID && t.DesiredState === 'running' && t.Status.State === 'running')
    .map((t) => ({ id: t.ID, host: t.NetworksAttachments![0]!.Addresses![0]!.split('/')[0]! }))
    .sort((a, b) => a.id.localeCompare(b.id));
}

describe('compile --compat on engine-shaped answers', () => {
  it('with --domain: whoami answers its name, app stays port 80\'s default as in dockercloud/haproxy, counter answers its rule\'s host, redis is left alone', () => {
    const s = snapshot();
    const t = compile(s, { ...options, domain: 'local.dev' });
    assert.deepEqual(t.routes.map((r) => [r.name, r.mode, r.port, r.hosts]), [
      ['app', 'http', 80, []],
      ['counter', 'http', 80, ['counter.local.dev']],
      ['whoami', 'http', 80, ['whoami.local.dev']],
    ]);
    for (const name of ['whoami', 'app', 'counter']) {
      const route = t.routes.find((r) => r.name === name)!;
      assert.deepEqual(route.backends.map((b) => ({ id: b.id, host: b.host })), tasksOf(s, name), name);
      assert.equal(route.backends.length, 2, name);
      assert.ok(route.backends.every((b) => b.port === 80 && b.node === 'node1' && !b.draining), name);
    }
    assert.deepEqual(Object.fromEntries(t.routes.map((r) => [r.name, r.from])), {
      app: ['SERVICE_PORTS'],
      counter: ['traefik.http.routers.counter.rule', 'traefik.http.services.counter.loadbalancer.server.port'],
      whoami: ['traefik.port'],
    });
    assert.deepEqual(t.notices, []);
    assert.deepEqual(t.routes.flatMap((r) => r.problems), []);
  });

  it('without --domain whoami and app both want any host on port 80: the older keeps it, the other is a notice', () => {
    const t = compile(snapshot(), options);
    assert.deepEqual(t.routes.map((r) => r.name), ['counter', 'whoami']);
    assert.deepEqual(t.notices.map((n) => [n.service, n.port, n.message]), [['app', 80, 'not served: port 80 is already served by whoami for any host; set meshd.hosts on both to share the port']]);
  });

  it('without --compat nothing of it is served', () => {
    const { compat: _off, ...plain } = options;
    const t = compile(snapshot(), plain);
    assert.deepEqual([t.routes, t.notices], [[], []]);
  });
});
