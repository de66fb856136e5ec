// compile() on answers recorded from a real Docker engine (test/fixtures/swarm,
// see its README): the engine's own JSON, as discovery receives it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SwarmSnapshot } from '../../src/discovery/snapshot.js';
import { compile, type CompileOptions } from '../../src/table/compile.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/swarm');
const load = (name: string): SwarmSnapshot => JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));
const options: CompileOptions = { defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: ['meshd'], ipvs: false };

function serviceId(s: SwarmSnapshot, name: string): string {
  const svc = s.services.find((x) => x.Spec.Name === name);
  assert.ok(svc, `fixture has service ${name}`);
  return svc.ID;
}

/** Task IDs of a service in the given desired/current state, straight from the recorded JSON. */
function taskIds(s: SwarmSnapshot, name: string, desired: string, state: string): string[] {
  const id = serviceId(s, name);
  return s.tasks.filter((t) => t.ServiceID === id && t.DesiredState === desired && t.Status.State === state).map((t) => t.ID).sort();
}

describe('compile on recorded engine answers', () => {
  it('replicated and global services', () => {
    const s = load('replicated.json');
    const t = compile(s, options);
    const whoami = t.routes.find((r) => r.name === 'whoami')!;
    assert.deepEqual({ mode: whoami.mode, port: whoami.port, path: whoami.health.path }, { mode: 'http', port: 8080, path: '/' });
    const running = taskIds(s, 'whoami', 'running', 'running');
    assert.equal(running.length, 3);
    assert.deepEqual(whoami.backends.map((b) => b.id), running);
    for (const b of whoami.backends) {
      assert.equal(b.port, 80);
      assert.match(b.host, /^\d+\.\d+\.\d+\.\d+$/);
      assert.ok(b.node, 'node name resolved');
    }
    const echo = t.routes.find((r) => r.name === 'echo')!;
    assert.equal(echo.mode, 'tcp');
    assert.equal(echo.port, 9000);
    assert.deepEqual(echo.backends.map((b) => b.id), taskIds(s, 'echo', 'running', 'running'));
    assert.equal(echo.backends.length, s.nodes.length, 'a global service runs one task a node');
    assert.deepEqual(t.routes.flatMap((r) => r.problems), []);
  });

  it('a service scaled to zero keeps its port with no backends', () => {
    const t = compile(load('scaled-to-zero.json'), options);
    const whoami = t.routes.find((r) => r.name === 'whoami')!;
    assert.equal(whoami.port, 8080);
    assert.deepEqual(whoami.backends, []);
  });

  it('a rolling update: old tasks still running with desired state shutdown drain', () => {
    const s = load('rolling-update.json');
    const web = compile(s, options).routes.find((r) => r.name === 'web')!;
    const draining = taskIds(s, 'web', 'shutdown', 'running');
    assert.ok(draining.length >= 1, 'the fixture caught a task draining');
    assert.deepEqual(web.backends.filter((b) => b.draining).map((b) => b.id), draining);
    assert.deepEqual(web.backends.filter((b) => !b.draining).map((b) => b.id), taskIds(s, 'web', 'running', 'running'));
  });

  it('a task with no address on meshd\'s network, and a port published the standard way', () => {
    const t = compile(load('no-meshd-network.json'), options);
    const lonely = t.routes.find((r) => r.name === 'lonely')!;
    assert.deepEqual(lonely.backends, []);
    assert.match(lonely.problems.join('\n'), /has no address on network meshd/);
    const plain = t.notices.find((n) => n.service === 'plain')!;
    assert.equal(plain.port, 8083);
    assert.match(plain.message, /ingress mode.*no IPVS.*meshd\.publish=8083:80/s);
    assert.equal(t.routes.some((r) => r.name === 'plain'), false);
  });

  it('bad labels become problems, never a crash, and the good services stay', () => {
    const t = compile(load('bad-labels.json'), options);
    const text = [...t.notices.map((n) => `${n.service}: ${n.message}`), ...t.routes.flatMap((r) => r.problems.map((p) => `${r.name}: ${p}`))].join('\n');
    assert.match(text, /"notaport" is not PUBLISHED:TARGET/);
    assert.match(text, /protocol "udp"/);
    assert.match(text, /outside 1-65535/);
    assert.match(text, /meshd.health.interval: "fast" is not a duration/);
    assert.match(text, /meshd.unknown: unknown label/);
    assert.match(text, /not served: port 8085 is already served by/);
    assert.equal(t.routes.filter((r) => r.port === 8085).length, 1, 'one of the two claimants keeps the port');
  });

  it('a task still starting (HEALTHCHECK not yet passed) gets no traffic', () => {
    const s = load('starting.json');
    const slow = compile(s, options).routes.find((r) => r.name === 'slow')!;
    assert.ok(taskIds(s, 'slow', 'running', 'starting').length >= 1, 'the fixture caught the task starting');
    assert.deepEqual(slow.backends, []);
  });

  it('the IPVS note depends only on the node, not the snapshot', () => {
    const withIpvs = compile(load('no-meshd-network.json'), { ...options, ipvs: true });
    assert.doesNotMatch(withIpvs.notices.find((n) => n.service === 'plain')!.message, /no IPVS/);
  });
});
