// Discovery against a real single-node swarm: a labelled service is created and
// scaled 1 → 3 → 1, and the routing table follows within 2 s each time; the
// engine goes away and comes back; a task's container dies and the engine's
// events take it out at once; every API call meshd made was a GET.
//
// The test runs discovery → compile → table only: task addresses live on the
// lab's overlay network, which this (root) namespace cannot reach, so no probe
// or proxy traffic is sent to them.
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/log.js';
import { ContainerWatcher } from '../../src/discovery/container-events.js';
import { dockerFromHost, engineInfo, MAX_BACKOFF, SwarmDiscovery } from '../../src/discovery/swarm.js';
import { compile } from '../../src/table/compile.js';
import { Table } from '../../src/table/table.js';
import { waitFor } from '../support/net.js';
import { DockerApiProxy } from './docker-proxy.js';
import { docker, labDown, labUp, type Lab } from './lab.js';

const FOLLOW_MS = 2000;
const PORT = 18080;

describe('swarm discovery on a real engine', () => {
  let lab: Lab;
  let proxy: DockerApiProxy;
  let discovery: SwarmDiscovery;
  const table = new Table({ drainTimeout: 1000 });
  const errors: unknown[] = [];
  const lags: Record<string, number> = {};

  before(() => {
    lab = labUp(1);
  });
  after(async () => {
    discovery?.stop();
    await proxy?.stop();
    labDown();
  });

  /** IDs of the service's tasks that the engine reports running with desired state running. */
  async function runningTasks(): Promise<string[]> {
    const out = await docker(lab.nodes[0]!, 'service', 'ps', 'web', '--no-trunc', '--filter', 'desired-state=running', '--format', '{{.ID}} {{.CurrentState}}');
    return out.split('\n').filter((l) => /\bRunning\b/.test(l)).map((l) => l.split(' ')[0]!).sort();
  }

  function tableTasks(): string[] {
    const route = table.ports.get(PORT)?.default;
    return route ? [...route.backends.values()].filter((b) => !b.draining).map((b) => b.id).sort() : [];
  }

  /** Waits until the engine runs `replicas` tasks, then measures how long the table takes to show exactly those. */
  async function follow(replicas: number, label: string, bound = FOLLOW_MS): Promise<void> {
    const running = await waitFor(async () => {
      const ids = await runningTasks();
      return ids.length === replicas ? ids : undefined;
    }, 60_000, `${replicas} running tasks`);
    const seen = Date.now();
    await waitFor(() => JSON.stringify(tableTasks()) === JSON.stringify(running), bound + 3000, `table with ${running.join(',')}`);
    lags[label] = Date.now() - seen;
    assert.ok(lags[label]! <= bound, `${label}: table followed after ${lags[label]} ms`);
  }

  it('starts from the engine and follows a service created and scaled 1 → 3 → 1', async () => {
    proxy = new DockerApiProxy(path.join(os.tmpdir(), `meshd-docker-proxy-${process.pid}.sock`), lab.nodes[0]!.sock);
    await proxy.start();
    discovery = new SwarmDiscovery({
      docker: dockerFromHost(`unix://${proxy.listenPath}`),
      log: silentLogger(),
      taskPollInterval: 1000,
      resyncInterval: 10_000,
      onSnapshot: (s) => table.apply(compile(s, { defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: ['meshd'], ipvs: false })),
      onError: (err) => errors.push(err),
    });
    discovery.start();
    await waitFor(() => table.loaded, 5000, 'first table');

    await docker(lab.nodes[0]!, 'service', 'create', '--detach', '--no-resolve-image', '--name', 'web', '--network', 'meshd',
      '--label', `meshd.publish=${PORT}:80/http`, '--replicas', '1', 'meshlab/busybox:latest', 'httpd', '-f', '-p', '80', '-h', '/www');
    await follow(1, 'create');
    const route = table.ports.get(PORT)!.default!;
    assert.equal(route.spec.mode, 'http');
    assert.match([...route.backends.values()][0]!.host, /^10\.\d+\.\d+\.\d+$/, 'address on the meshd overlay');

    await docker(lab.nodes[0]!, 'service', 'scale', '--detach', 'web=3');
    await follow(3, 'scale to 3');
    await docker(lab.nodes[0]!, 'service', 'scale', '--detach', 'web=1');
    await follow(1, 'scale to 1');
    assert.deepEqual(errors, []);
  });

  it('keeps the last good table while the engine is unreachable, and resyncs when it returns', async () => {
    const before = tableTasks();
    await proxy.cut();
    await waitFor(() => errors.length >= 2, 10_000, 'discovery errors');
    assert.deepEqual(tableTasks(), before, 'the table is kept');
    await docker(lab.nodes[0]!, 'service', 'scale', '--detach', 'web=2');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(tableTasks(), before, 'no change can be seen while cut off');
    await proxy.start();
    // Reads back off while the engine is away (at most MAX_BACKOFF between tries).
    await follow(2, 'after reconnect', MAX_BACKOFF);
  });

  it('takes a task out as soon as its container dies, from the engine\'s events', async () => {
    const client = dockerFromHost(`unix://${proxy.listenPath}`);
    const info = await engineInfo(client);
    assert.equal(info.role, 'manager');
    assert.deepEqual(info.managers, [lab.nodes[0]!.addr], 'the manager\'s own address, where workers find its meshd before DNS knows it');
    const failed: string[] = [];
    const watcher = new ContainerWatcher(client, silentLogger(), (task) => {
      failed.push(task);
      table.markTaskFailed(task);
    });
    watcher.start();
    try {
      const [task] = tableTasks();
      const container = await docker(lab.nodes[0]!, 'inspect', '--format', '{{.Status.ContainerStatus.ContainerID}}', task!);
      await new Promise((r) => setTimeout(r, 300));
      const killedAt = Date.now();
      await docker(lab.nodes[0]!, 'kill', container);
      await waitFor(() => failed.includes(task!), 5000, 'die event for the task');
      lags['container death'] = Date.now() - killedAt;
      const backend = [...table.ports.get(PORT)!.default!.backends.values()].find((b) => b.id === task)!;
      assert.equal(backend.eligible, false, 'out of picks before the next task poll');
    } finally {
      watcher.stop();
    }
  });

  it('only ever read the Docker API', () => {
    assert.ok(proxy.requests.length > 5, `saw ${proxy.requests.length} requests`);
    const writes = proxy.requests.filter((r) => !r.startsWith('GET '));
    assert.deepEqual(writes, []);
    assert.ok(proxy.requests.some((r) => r.includes('/events')), 'watched events');
    process.stdout.write(`# table lag after each change (ms): ${JSON.stringify(lags)}\n`);
  });
});
