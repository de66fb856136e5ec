// meshd on a real 3-node swarm (node1 manager, node2 and node3 workers), deployed
// from deploy/stack.yml with the image built from the project's Dockerfile.
// Requests go from this namespace to the nodes' own addresses on the lab bridge,
// as clients would reach real nodes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { get, waitFor } from '../support/net.js';
import { httpsServed, startPebble, type Pebble } from '../support/pebble.js';
import { docker, labDown, labImages, labUp, type Lab, type LabNode } from './lab.js';
import { runLoad } from './load.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const FOLLOW_MS = 2000;
const APP = 'meshlab/whoami:latest';
/** The client's address as the nodes see it: this namespace's address on the lab bridge. */
const CLIENT_ADDR = '10.77.0.1';

/** Failures counted by kind: `3 × status 503: …, 1 × ECONNRESET`. */
function summarize(failures: string[]): string {
  const counts = new Map<string, number>();
  for (const f of failures) counts.set(f.trim(), (counts.get(f.trim()) ?? 0) + 1);
  return [...counts].map(([f, n]) => `${n} × ${f}`).join(', ');
}

interface RouteView {
  name: string;
  port: number;
  hosts: string[];
  backends: { id: string; node: string | null; state: string; health: { active: string; ejected: boolean; failed: boolean } }[];
}

describe('meshd on a 3-node swarm', () => {
  let lab: Lab;
  let manager: LabNode;
  let pebble: Pebble | undefined;
  const figures: Record<string, unknown> = {};
  const t0 = Date.now();

  before(async () => {
    lab = labUp(3);
    manager = lab.nodes[0]!;
    labImages();
    // A real ACME CA on this namespace's lab address; every name resolves to node2, a worker, so its
    // meshd (which does not order) must answer the challenge.
    pebble = await startPebble({ httpPort: 80, host: CLIENT_ADDR, answer: lab.nodes[1]!.addr });
    await secret('meshd_token', 'lab-token-0123456789\n');
    await secret('pebble_ca', fs.readFileSync(pebble.caFile, 'utf8'));
    // deploy/stack.yml as shipped, plus the ACME settings that point at pebble and the compatibility flags.
    const stack = YAML.parse(fs.readFileSync(path.join(REPO, 'deploy/stack.yml'), 'utf8')) as { services: { meshd: { environment?: Record<string, string>; secrets: string[] } }; secrets: Record<string, unknown> };
    stack.services.meshd.environment = {
      MESHD_ACME_EMAIL: 'ops@acme.test', MESHD_ACME_DIRECTORY: pebble.directoryUrl, MESHD_ACME_CA_FILE: '/run/secrets/pebble_ca',
      // The Traefik and dockercloud/haproxy example stacks run unchanged, and services without hosts get <name>.local.dev.
      MESHD_COMPAT: 'traefik,dockercloud', MESHD_DOMAIN: 'local.dev',
    };
    stack.services.meshd.secrets.push('pebble_ca');
    stack.secrets.pebble_ca = { external: true };
    const stackFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-stack-')), 'stack.yml');
    fs.writeFileSync(stackFile, YAML.stringify(stack));
    const deployedAt = Date.now();
    await docker(manager, 'stack', 'deploy', '-c', stackFile, 'meshd');
    // When each node's meshd first has a table. The manager's instance publishes
    // its first snapshot to workers at the moment it applies it itself, so a
    // worker's lag behind it is the time it took to find and follow it.
    const readyAt = await Promise.all(lab.nodes.map((node) => waitFor(async () => (await get(9900, '/readyz', {}, false, node.addr)).status === 200 ? Date.now() : undefined,
      60_000, `meshd ready on ${node.addr}`)));
    figures.managerFirstTableMs = readyAt[0]! - deployedAt;
    figures.workerFirstTableLagMs = Object.fromEntries(readyAt.slice(1).map((at, i) => [`node${i + 2}`, at - readyAt[0]!]));
    // The workers' log lines reach the manager's `service logs` a moment later.
    figures.workerStartup = await waitFor(async () => {
      const found = await workerStartup();
      return Object.keys(found).length === 2 ? found : undefined;
    }, 15_000, 'every worker\'s start in the service logs').catch((err: Error) => err.message);
    figures.setupSeconds = Math.round((Date.now() - t0) / 1000);
  });

  function secret(name: string, value: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const child = spawn('docker', ['-H', `unix://${manager.sock}`, 'secret', 'create', name, '-']);
      child.stdin.end(value);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`secret create ${name} exited ${code}`))));
    });
  }

  after(() => {
    pebble?.stop();
    process.stdout.write(`# swarm figures: ${JSON.stringify({ ...figures, totalSeconds: Math.round((Date.now() - t0) / 1000) })}\n`);
    labDown();
  });

  /**
   * The same lag from meshd's own log times (one clock: every node runs on this
   * machine), split into when each worker's meshd started after the manager's
   * first table (its container's start, not meshd's doing) and how long it took
   * from its own start to following a manager instance (finding one by DNS and
   * connecting) and to its first table.
   */
  async function workerStartup(): Promise<Record<string, { startedAfterManagerTableMs: number; ownStartToFollowMs?: number; ownStartToTableMs: number }>> {
    const first = new Map<string, number>();
    const logs = await docker(manager, 'service', 'logs', '--no-task-ids', 'meshd_meshd');
    for (const line of logs.split('\n')) {
      const m = /@(node\d+)\s*\|\s*(\{.*\})\s*$/.exec(line);
      if (!m) continue;
      const entry = JSON.parse(m[2]!) as { msg?: string; time?: string };
      const key = `${m[1]} ${entry.msg}`;
      if (entry.time) first.set(key, Math.min(first.get(key) ?? Infinity, Date.parse(entry.time)));
    }
    const managerTable = first.get('node1 routing table updated');
    const out: Record<string, { startedAfterManagerTableMs: number; ownStartToFollowMs?: number; ownStartToTableMs: number }> = {};
    for (const node of ['node2', 'node3']) {
      const started = first.get(`${node} swarm discovery starting`);
      const follow = first.get(`${node} following peer`);
      const table = first.get(`${node} routing table updated`);
      if (managerTable === undefined || started === undefined || table === undefined) continue;
      out[node] = { startedAfterManagerTableMs: started - managerTable, ...(follow === undefined ? {} : { ownStartToFollowMs: follow - started }), ownStartToTableMs: table - started };
    }
    return out;
  }

  /**
   * A scenario whose failure also prints what meshd logged at warn and above
   * on every node (ejections, discovery errors), so a red run explains itself.
   */
  function scenario(title: string, body: () => Promise<void>): void {
    it(title, async () => {
      try {
        await body();
      } catch (err) {
        const logs = await docker(manager, 'service', 'logs', '--no-task-ids', '--raw', 'meshd_meshd').catch((e: Error) => e.message);
        const lines = logs.split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-40);
        process.stdout.write(`# meshd warnings during "${title}":\n${lines.map((l) => `#   ${l}`).join('\n')}\n`);
        throw err;
      }
    });
  }

  async function routes(node: LabNode): Promise<RouteView[]> {
    return (JSON.parse((await get(9900, '/api/routes', {}, false, node.addr)).body) as { routes: RouteView[] }).routes;
  }

  async function route(node: LabNode, name: string): Promise<RouteView | undefined> {
    return (await routes(node)).find((r) => r.name === name);
  }

  /** IDs of a service's tasks that run with desired state running, as the manager's engine says. */
  async function runningTasks(service: string): Promise<string[]> {
    const out = await docker(manager, 'service', 'ps', service, '--no-trunc', '--filter', 'desired-state=running', '--format', '{{.ID}} {{.CurrentState}}');
    return out.split('\n').filter((l) => /\bRunning\b/.test(l)).map((l) => l.split(' ')[0]!).sort();
  }

  async function activeBackends(node: LabNode, service: string): Promise<string[]> {
    const r = await route(node, service);
    return (r?.backends ?? []).filter((b) => b.state !== 'draining').map((b) => b.id).sort();
  }

  /** Waits for `replicas` running tasks, then for every node's table to hold exactly them; returns the slowest node's lag. */
  async function everyNodeFollows(service: string, replicas: number, bound = FOLLOW_MS): Promise<number> {
    const running = await waitFor(async () => {
      const ids = await runningTasks(service);
      return ids.length === replicas ? ids : undefined;
    }, 90_000, `${replicas} running tasks of ${service}`);
    const seen = Date.now();
    let slowest = 0;
    for (const node of lab.nodes) {
      await waitFor(async () => JSON.stringify(await activeBackends(node, service)) === JSON.stringify(running), bound + 5000, `${node.addr} routing ${service} to ${running.length} tasks`);
      slowest = Math.max(slowest, Date.now() - seen);
    }
    assert.ok(slowest <= bound, `${service}: every node followed within ${slowest} ms`);
    return slowest;
  }

  /**
   * Waits until every node's table has `count` backends in rotation. A task that
   * has just started can be unreachable over the overlay for a moment (the
   * nodes learn its address by gossip): a request that meets that is retried on
   * another task and the new one is ejected until its probes pass.
   */
  async function allActive(service: string, count: number): Promise<void> {
    for (const node of lab.nodes) {
      await waitFor(async () => (await route(node, service))?.backends.filter((b) => b.state === 'active').length === count, 15_000, `${count} active backends of ${service} on ${node.addr}`);
    }
  }

  async function createApp(name: string, ...args: string[]): Promise<void> {
    await docker(manager, 'service', 'create', '--detach', '--no-resolve-image', '--name', name, '--network', 'meshd', ...args, APP);
  }

  async function whoami(node: LabNode, port: number, host?: string): Promise<{ task: string; forwardedFor: string }> {
    const r = await get(port, '/', host ? { host } : {}, false, node.addr);
    assert.equal(r.status, 200, `${node.addr}:${port} answered ${r.status}: ${r.body}`);
    return JSON.parse(r.body);
  }

  scenario('any node serves any service, round-robin over the tasks, and passes the client\'s address', async () => {
    await createApp('pinned', '--replicas', '2', '--constraint', 'node.hostname==node3', '--label', 'meshd.publish=8080:80/http');
    await everyNodeFollows('pinned', 2, 60_000);
    await allActive('pinned', 2);
    const tasks = new Set<string>();
    for (const node of lab.nodes) {
      const seen: string[] = [];
      for (let i = 0; i < 12; i++) {
        // --domain names the service: pinned.local.dev.
        const r = await whoami(node, 8080, 'pinned.local.dev');
        seen.push(r.task);
        assert.equal(r.forwardedFor, CLIENT_ADDR, 'the backend sees the client, not a node');
      }
      // Each worker process of a node goes round-robin on its own, so the two tasks
      // share the requests evenly, off by at most one per worker (two here).
      const counts = [...new Set(seen)].map((t) => seen.filter((x) => x === t).length);
      assert.equal(counts.length, 2, `${node.addr} answered from ${seen}`);
      assert.ok(counts.every((n) => n >= 4 && n <= 8), `${node.addr} spread ${counts} over the two tasks`);
      seen.forEach((t) => tasks.add(t));
    }
    assert.equal(tasks.size, 2);
  });

  scenario('follows scaling 1 → 5 → 2 on every node within 2 s', async () => {
    await createApp('scaled', '--replicas', '1', '--label', 'meshd.publish=80:80/http', '--label', 'meshd.hosts=scaled.test');
    await everyNodeFollows('scaled', 1, 60_000);
    await docker(manager, 'service', 'scale', '--detach', 'scaled=5');
    figures.scaleUpLagMs = await everyNodeFollows('scaled', 5);
    await docker(manager, 'service', 'scale', '--detach', 'scaled=2');
    figures.scaleDownLagMs = await everyNodeFollows('scaled', 2);
    await allActive('scaled', 2);
    for (const node of lab.nodes) {
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add((await whoami(node, 80, 'scaled.test')).task);
      assert.equal(seen.size, 2, `${node.addr} answered from ${[...seen]}; its table: ${JSON.stringify(await route(node, 'scaled'))}`);
    }
  });

  scenario('serves the Redis-backed counter by host name from every node, one count across its replicas', async () => {
    // dnsrr: the name resolves to the task itself (a service VIP needs IPVS, which the kernel may lack).
    await docker(manager, 'service', 'create', '--detach', '--no-resolve-image', '--name', 'redis', '--network', 'meshd', '--endpoint-mode', 'dnsrr', 'meshlab/redis:latest');
    await createApp('counter', '--replicas', '2', '--env', 'MODE=counter', '--env', 'REDIS=redis:6379',
      '--label', 'meshd.publish=80:80/http', '--label', 'meshd.hosts=counter.local.dev');
    await everyNodeFollows('counter', 2, 60_000);
    await allActive('counter', 2);
    const view = async (node: LabNode) => {
      const r = await get(80, '/', { host: 'counter.local.dev' }, false, node.addr);
      const m = /viewed (\d+) times \(by (\w+)\)/.exec(r.body);
      return r.status === 200 && m ? { count: Number(m[1]), by: m[2]! } : undefined;
    };
    // Redis may start after the counter's tasks: wait for a first answer.
    const first = await waitFor(() => view(manager), 30_000, 'a first count');
    const counts: number[] = [first.count];
    const answeredBy = new Set([first.by]);
    for (let i = 1; i <= 6; i++) {
      const v = await view(lab.nodes[i % 3]!);
      assert.ok(v, `request ${i} through ${lab.nodes[i % 3]!.addr} failed`);
      counts.push(v.count);
      answeredBy.add(v.by);
    }
    assert.deepEqual(counts, counts.map((_, i) => first.count + i), 'one count, whichever node and replica answered');
    assert.equal(answeredBy.size, 2, 'both replicas answered');
    await docker(manager, 'service', 'rm', 'counter', 'redis');
  });

  scenario('orders a certificate once, on the leader\'s meshd, has a worker answer the challenge, and serves it on every node', async () => {
    const issued = async (node: LabNode) => Number(/^meshd_acme_orders_total\{result="issued"\} (\d+)$/m.exec((await get(9900, '/metrics', {}, false, node.addr)).body)?.[1] ?? NaN);
    await createApp('secure', '--replicas', '2', '--label', 'meshd.publish=80:80/http,443:80/https', '--label', 'meshd.hosts=acme.test',
      '--label', 'meshd.tls=acme', '--label', 'meshd.redirect=https');
    await everyNodeFollows('secure', 2, 60_000);
    const orderedAt = Date.now();
    const root = await pebble!.root();
    // The https handshake fails until the certificate has reached that node.
    const served = [];
    for (const node of lab.nodes) served.push(await waitFor(() => httpsServed(node.addr, 443, 'acme.test', root), 60_000, `acme.test's certificate on ${node.addr}`));
    figures.acmeIssuedEverywhereMs = Date.now() - orderedAt;
    const [first] = served;
    assert.equal(first!.leaf.subjectAltName, 'DNS:acme.test');
    for (const s of served) {
      assert.equal(s.leaf.fingerprint256, first!.leaf.fingerprint256, 'the same certificate on every node');
      assert.equal(s.status, 200, 'the backend answers over https');
      assert.ok(s.chain.length >= 2, 'leaf and intermediate are sent');
    }
    assert.deepEqual(await Promise.all(lab.nodes.map(issued)), [1, 0, 0], 'one order, by the leader\'s instance');
    // Plain HTTP on the route redirects, on every node; the challenge path was answered before that rule by node2.
    for (const node of lab.nodes) {
      const r = await get(80, '/p?q=1', { host: 'acme.test' }, false, node.addr);
      assert.equal(r.status, 308);
      assert.equal(r.headers.location, 'https://acme.test/p?q=1');
    }
    await docker(manager, 'service', 'rm', 'secure');
  });

  scenario('runs the Traefik and dockercloud/haproxy example stacks unchanged: whoami.local.dev, a SERVICE_PORTS app as port 80\'s default, the counter by its Traefik v2 rule', async () => {
    // The seeds' stacks, as written for Traefik v1, dockercloud/haproxy and Traefik v2: only the network is meshd's.
    await createApp('whoami', '--replicas', '2', '--label', 'traefik.port=80');
    await createApp('app', '--replicas', '2', '--env', 'SERVICE_PORTS=80');
    await docker(manager, 'service', 'create', '--detach', '--no-resolve-image', '--name', 'redis', '--network', 'meshd', '--endpoint-mode', 'dnsrr', 'meshlab/redis:latest');
    await createApp('counter', '--replicas', '2', '--env', 'MODE=counter', '--env', 'REDIS=redis:6379',
      '--label', 'traefik.http.routers.counter.rule=Host(`counter.local.dev`)', '--label', 'traefik.http.services.counter.loadbalancer.server.port=80');
    for (const name of ['whoami', 'app', 'counter']) {
      await everyNodeFollows(name, 2, 60_000);
      await allActive(name, 2);
    }
    const view = await route(manager, 'whoami') as RouteView & { from?: string[] };
    assert.deepEqual([view.hosts, view.from], [['whoami.local.dev'], ['traefik.port']]);
    const byName = { whoami: new Set<string>(), app: new Set<string>() };
    for (const node of lab.nodes) {
      for (let i = 0; i < 4; i++) {
        byName.whoami.add((await whoami(node, 80, 'whoami.local.dev')).task);
        // Any host no route names reaches the dockercloud app, port 80's default.
        byName.app.add((await whoami(node, 80, `unnamed-${i}.test`)).task);
      }
    }
    assert.equal(byName.whoami.size, 2, 'both whoami tasks answered whoami.local.dev');
    assert.equal(byName.app.size, 2, 'both app tasks answered as the default');
    assert.ok([...byName.app].every((t) => !byName.whoami.has(t)), 'and never each other\'s requests');
    const counts: number[] = [];
    await waitFor(async () => (await get(80, '/', { host: 'counter.local.dev' }, false, manager.addr)).status === 200, 30_000, 'redis and the counter to answer');
    for (let i = 0; i < 6; i++) {
      const r = await get(80, '/', { host: 'counter.local.dev' }, false, lab.nodes[i % 3]!.addr);
      const m = /viewed (\d+) times/.exec(r.body);
      assert.ok(r.status === 200 && m, `counter.local.dev through ${lab.nodes[i % 3]!.addr}: ${r.status} ${r.body}`);
      counts.push(Number(m[1]));
    }
    assert.deepEqual(counts, counts.map((_, i) => counts[0]! + i), 'one count through every node');
    await docker(manager, 'service', 'rm', 'whoami', 'app', 'counter', 'redis');
  });

  scenario('sends nothing to a task before its HEALTHCHECK passes, and ejects a replica that fails its probe on every node', async () => {
    const healthCmd = `node -e "fetch('http://127.0.0.1/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"`;
    await createApp('gated', '--replicas', '1', '--env', 'READY_AFTER_MS=5000', '--health-cmd', healthCmd, '--health-interval', '1s', '--health-retries', '30',
      '--label', 'meshd.publish=80:80/http', '--label', 'meshd.hosts=gated.test', '--label', 'meshd.health.path=/health', '--label', 'meshd.health.interval=500ms', '--label', 'meshd.health.fall=2');
    await everyNodeFollows('gated', 1, 60_000);
    const [first] = await runningTasks('gated');
    await docker(manager, 'service', 'scale', '--detach', 'gated=2');
    // While the new task is starting, every answer comes from the first one.
    let answersWhileStarting = 0;
    for (let i = 0; i < 200; i++) {
      const states = await docker(manager, 'service', 'ps', 'gated', '--filter', 'desired-state=running', '--format', '{{.CurrentState}}');
      if (!/Starting/.test(states)) {
        if (/Running[\s\S]*Running/.test(states)) break;
        continue;
      }
      const r = await whoami(lab.nodes[i % 3]!, 80, 'gated.test');
      const still = /Starting/.test(await docker(manager, 'service', 'ps', 'gated', '--filter', 'desired-state=running', '--format', '{{.CurrentState}}'));
      if (still) {
        answersWhileStarting++;
        const hostOfFirst = (await docker(manager, 'inspect', '--format', '{{.Status.ContainerStatus.ContainerID}}', first!)).slice(0, 12);
        assert.equal(r.task, hostOfFirst, 'a starting task got no request');
      }
    }
    assert.ok(answersWhileStarting >= 3, `observed ${answersWhileStarting} answers while the task was starting`);
    await everyNodeFollows('gated', 2);

    // Now make one replica fail meshd's probe (its container HEALTHCHECK would also fail, later).
    const [victim] = await runningTasks('gated');
    const info = (await docker(manager, 'inspect', '--format', '{{.NodeID}} {{.Status.ContainerStatus.ContainerID}}', victim!)).split(' ');
    const hostname = await docker(manager, 'node', 'inspect', '--format', '{{.Description.Hostname}}', info[0]!);
    const victimNode = lab.nodes[Number(hostname.replace('node', '')) - 1]!;
    await docker(victimNode, 'exec', info[1]!, 'node', '-e', `require('fs').writeFileSync('/tmp/unhealthy', '')`);
    for (const node of lab.nodes) {
      await waitFor(async () => (await route(node, 'gated'))?.backends.find((b) => b.id === victim)?.health.active === 'down', 10_000, `${node.addr} ejects the failing replica`);
    }
    for (let i = 0; i < 6; i++) assert.notEqual((await whoami(lab.nodes[i % 3]!, 80, 'gated.test')).task, info[1]!.slice(0, 12));
    await docker(manager, 'service', 'rm', 'gated');
  });

  scenario('keeps serving from workers while the manager\'s meshd is down, and they resync when it returns', async () => {
    await createApp('steady', '--replicas', '2', '--label', 'meshd.publish=80:80/http', '--label', 'meshd.hosts=steady.test');
    await everyNodeFollows('steady', 2, 60_000);
    // Both in rotation everywhere before the outage: a worker's table cannot change during it.
    await allActive('steady', 2);
    const meshdOnManager = await docker(manager, 'ps', '-q', '--filter', 'label=com.docker.swarm.service.name=meshd_meshd');
    const restartedAt = Date.now();
    await docker(manager, 'kill', meshdOnManager);
    await docker(manager, 'service', 'scale', '--detach', 'steady=3');
    let servedDuringOutage = 0;
    for (let i = 0; i < 20; i++) {
      for (const node of lab.nodes.slice(1)) {
        await whoami(node, 80, 'steady.test');
        servedDuringOutage++;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(servedDuringOutage, 40);
    await waitFor(async () => (await get(9900, '/readyz', {}, false, manager.addr)).status === 200, 60_000, 'meshd back on the manager');
    figures.managerRestartSeconds = Math.round((Date.now() - restartedAt) / 1000);
    await everyNodeFollows('steady', 3, 30_000);
    await docker(manager, 'service', 'rm', 'steady');
  });

  scenario('loses no request during a rolling update under load', async () => {
    for (const node of lab.nodes) await docker(node, 'tag', APP, 'meshlab/whoami:v2');
    await createApp('rolling', '--replicas', '4', '--update-order', 'start-first', '--update-parallelism', '1', '--update-delay', '1s', '--stop-grace-period', '10s',
      '--label', 'meshd.publish=80:80/http', '--label', 'meshd.hosts=rolling.test');
    await everyNodeFollows('rolling', 4, 60_000);
    // Probes gate new tasks: load before they pass would meet a route with nothing in rotation yet.
    await allActive('rolling', 4);
    const load = runLoad({ host: lab.nodes[1]!.addr, port: 80, hostHeader: 'rolling.test', rate: 200, durationMs: 20_000 });
    await new Promise((r) => setTimeout(r, 1000));
    await docker(manager, 'service', 'update', '--detach', '--no-resolve-image', '--image', 'meshlab/whoami:v2', 'rolling');
    const result = await load;
    figures.rollingUpdate = { sent: result.sent, ok: result.ok, failed: result.failures.length, tasksSeen: result.tasks.size };
    assert.equal(result.failures.length, 0, `${result.failures.length} of ${result.sent} failed: ${summarize(result.failures)}`);
    assert.ok(result.tasks.size > 4, 'old and new tasks both answered');
    await docker(manager, 'service', 'rm', 'rolling');
  });

  scenario('keeps requests succeeding when a task\'s container is killed and when a worker node stops', async () => {
    await createApp('victims', '--replicas', '4', '--label', 'meshd.publish=80:80/http', '--label', 'meshd.hosts=victims.test');
    await everyNodeFollows('victims', 4, 60_000);
    await allActive('victims', 4);
    const [victim] = await runningTasks('victims');
    const [nodeId, container] = (await docker(manager, 'inspect', '--format', '{{.NodeID}} {{.Status.ContainerStatus.ContainerID}}', victim!)).split(' ');
    const hostname = await docker(manager, 'node', 'inspect', '--format', '{{.Description.Hostname}}', nodeId!);
    const victimNode = lab.nodes[Number(hostname.replace('node', '')) - 1]!;
    const load = runLoad({ host: manager.addr, port: 80, hostHeader: 'victims.test', rate: 100, durationMs: 8000 });
    await new Promise((r) => setTimeout(r, 1000));
    const killedAt = Date.now();
    await docker(victimNode, 'kill', container!);
    for (const node of lab.nodes) {
      await waitFor(async () => (await route(node, 'victims'))?.backends.find((b) => b.id === victim)?.state !== 'active', 5000, `${node.addr} takes the dead task out`);
    }
    figures.taskDeathOutMs = Date.now() - killedAt;
    const result = await load;
    figures.taskKill = { sent: result.sent, ok: result.ok, failed: result.failures };
    assert.ok(result.failures.length <= 5, `failures: ${summarize(result.failures)}`);
    await everyNodeFollows('victims', 4, 60_000);
    await allActive('victims', 4);

    // Node loss: node3's engine stops (its containers and its meshd with it).
    const nodeLoad = runLoad({ host: manager.addr, port: 80, hostHeader: 'victims.test', rate: 100, durationMs: 10_000 });
    await new Promise((r) => setTimeout(r, 1000));
    const pid = fs.readFileSync(`${lab.env.MESHLAB_DIR}/n3/docker.pid`, 'utf8').trim();
    process.kill(Number(pid), 'SIGKILL');
    const nodeResult = await nodeLoad;
    figures.nodeLoss = { sent: nodeResult.sent, ok: nodeResult.ok, failed: nodeResult.failures };
    assert.ok(nodeResult.failures.length <= 10, `failures: ${summarize(nodeResult.failures)}`);
    // The table converges: node1 routes only to tasks swarm still runs.
    const converged = Date.now();
    await waitFor(async () => {
      const r = await route(manager, 'victims');
      return r && r.backends.filter((b) => b.state === 'active').every((b) => b.node !== 'node3');
    }, 60_000, 'no active backend on the lost node');
    figures.nodeLossConvergeMs = Date.now() - converged;
  });
});
