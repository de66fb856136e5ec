// Bytes a manager sends each follower per swarm change, at 1,000 and 10,000
// services of 10 running tasks each (and 4 old tasks per slot), before and
// after deltas. Engine answers are made in the engine's own shape, fields meshd
// does not read included, and go through SwarmDiscovery (a fake engine) and
// PeerServer as in meshd; a follower on loopback counts the bytes, and a
// worker process (worker-follower.ts: PeerFollower, incremental compiler,
// table) reports the CPU each change costs it.
//
//   npm run bench:peers
import { fork, type ChildProcess } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { silentLogger } from '../src/core/log.js';
import { DELTAS_FEATURE, FEATURES_HEADER, PeerServer, SNAPSHOTS_PATH } from '../src/discovery/peer.js';
import type { SwarmChange, SwarmSnapshot } from '../src/discovery/snapshot.js';
import { SwarmDiscovery, type DockerReader } from '../src/discovery/swarm.js';

const TOKEN = 'bench';
const TASKS_PER_SERVICE = 10;
const OLD_PER_SLOT = 4;
const hex = (n: number, len: number) => n.toString(16).padStart(len, '0').slice(-len);
const id = (kind: string, n: number) => `${kind}${hex(n, 24 - kind.length)}`;
const when = '2026-11-26T01:02:03.123456789Z';
const network = {
  ID: 'meshdnet0000000000000000n', Version: { Index: 18 }, CreatedAt: when, UpdatedAt: when,
  Spec: { Name: 'meshd', Labels: {}, DriverConfiguration: { Name: 'overlay' }, Attachable: true, IPAMOptions: { Driver: { Name: 'default' }, Configs: [{ Subnet: '10.0.0.0/16', Gateway: '10.0.0.1' }] }, Scope: 'swarm' },
  DriverState: { Name: 'overlay', Options: { 'com.docker.network.driver.overlay.vxlanid_list': '4097' } },
  IPAMOptions: { Driver: { Name: 'default' }, Configs: [{ Subnet: '10.0.0.0/16', Gateway: '10.0.0.1' }] },
};
const platforms = ['amd64', 'arm64', 'arm', '386', 'ppc64le', 's390x'].map((a) => ({ Architecture: a, OS: 'linux' }));

function serviceSpec(s: number, labels: Record<string, string>) {
  return {
    Name: `stack_svc${s}`,
    Labels: { 'com.docker.stack.namespace': 'stack', 'com.docker.stack.image': `registry.example/app${s}:1.4.2`, ...labels },
    TaskTemplate: {
      ContainerSpec: {
        Image: `registry.example/app${s}:1.4.2@sha256:${hex(s, 64)}`, Labels: { 'com.docker.stack.namespace': 'stack' },
        Env: ['NODE_ENV=production', `SERVICE_NAME=svc${s}`, 'LOG_LEVEL=info'], Privileges: { CredentialSpec: null, SELinuxContext: null },
        StopGracePeriod: 10_000_000_000, Isolation: 'default',
      },
      Resources: { Limits: { MemoryBytes: 268435456 }, Reservations: {} },
      RestartPolicy: { Condition: 'any', Delay: 5_000_000_000, MaxAttempts: 0 },
      Placement: { Constraints: ['node.role==worker'], Platforms: platforms },
      Networks: [{ Target: network.ID, Aliases: [`svc${s}`] }], ForceUpdate: 0, Runtime: 'container',
    },
    Mode: { Replicated: { Replicas: TASKS_PER_SERVICE } },
    UpdateConfig: { Parallelism: 1, FailureAction: 'pause', Monitor: 5_000_000_000, MaxFailureRatio: 0, Order: 'start-first' },
    RollbackConfig: { Parallelism: 1, FailureAction: 'pause', Monitor: 5_000_000_000, MaxFailureRatio: 0, Order: 'stop-first' },
    EndpointSpec: { Mode: 'vip' },
  };
}

function service(s: number, index: number, labels: Record<string, string> = {}) {
  const spec = serviceSpec(s, { 'meshd.publish': `${20000 + (s % 40000)}:8080/http`, 'meshd.hosts': `svc${s}.example.com`, ...labels });
  return {
    ID: id('s', s), Version: { Index: index }, CreatedAt: when, UpdatedAt: when, Spec: spec, PreviousSpec: spec,
    Endpoint: { Spec: { Mode: 'vip' }, VirtualIPs: [{ NetworkID: network.ID, Addr: `10.0.${s % 250}.2/16` }] },
  };
}

function task(s: number, slot: number, gen: number, state: string, desired: string, index: number) {
  const n = (s * TASKS_PER_SERVICE + slot) * 8 + gen;
  return {
    ID: id('t', n), Version: { Index: index }, CreatedAt: when, UpdatedAt: when, Labels: {},
    Spec: serviceSpec(s, {}).TaskTemplate, ServiceID: id('s', s), Slot: slot + 1, NodeID: id('n', n % 50),
    Status: { Timestamp: when, State: state, Message: state === 'running' ? 'started' : 'shutdown', ContainerStatus: { ContainerID: hex(n, 64), PID: n % 65536, ExitCode: 0 }, PortStatus: {} },
    DesiredState: desired,
    NetworksAttachments: [{ Network: network, Addresses: [`10.0.${(n >> 8) % 256}.${n % 256}/16`] }],
  };
}

/** A swarm the fake engine serves; `change` edits it as the orchestrator would. */
function engine(services: number) {
  let index = 1000;
  const svc = Array.from({ length: services }, (_, s) => service(s, index++));
  const tasks = new Map<string, ReturnType<typeof task>>();
  for (let s = 0; s < services; s++) {
    for (let slot = 0; slot < TASKS_PER_SERVICE; slot++) {
      for (let gen = 0; gen < OLD_PER_SLOT; gen++) { const t = task(s, slot, gen, 'shutdown', 'shutdown', index++); tasks.set(t.ID, t); }
      const t = task(s, slot, OLD_PER_SLOT, 'running', 'running', index++);
      tasks.set(t.ID, t);
    }
  }
  const nodes = Array.from({ length: 50 }, (_, n) => ({ ID: id('n', n), Version: { Index: 5 }, Description: { Hostname: `node${n}`, Engine: { EngineVersion: '27.5.1', Plugins: [] } }, Status: { State: 'ready', Addr: `10.1.0.${n}` }, Spec: { Availability: 'active', Role: 'worker' } }));
  const reader = {
    listServices: async () => svc,
    listTasks: async (o?: { filters?: Record<string, string[]> }) => {
      const f = o?.filters ?? {};
      return [...tasks.values()].filter((t) => (!f['desired-state'] || f['desired-state'].includes(t.DesiredState)) && (!f.id || f.id.includes(t.ID)) && (!f.service || f.service.includes(t.ServiceID)));
    },
    listNodes: async () => nodes,
    listNetworks: async () => [{ Id: network.ID, Name: 'meshd', Driver: 'overlay', Scope: 'swarm', IPAM: network.IPAMOptions, Options: {}, Labels: {} }],
    getEvents: async () => new PassThrough(),
  } as unknown as DockerReader;
  const set = (t: ReturnType<typeof task>) => tasks.set(t.ID, { ...t, Version: { Index: index++ } });
  return {
    reader,
    /** All tasks as main's discovery handed them on (running ones only reach the wire). */
    raw: () => ({ services: svc, tasks: [...tasks.values()].filter((t) => t.Status.State === 'running'), nodes, networks: [] }),
    // One step of a rolling update of service 0, slot 0: the old task drains, a new one runs, the old one stops.
    drain: () => set({ ...tasks.get(id('t', OLD_PER_SLOT))!, DesiredState: 'shutdown' }),
    start: () => set(task(0, 0, OLD_PER_SLOT + 1, 'running', 'running', 0)),
    stop: () => set({ ...tasks.get(id('t', OLD_PER_SLOT))!, DesiredState: 'shutdown', Status: { ...tasks.get(id('t', OLD_PER_SLOT))!.Status, State: 'shutdown' } }),
    relabel: () => { svc[1] = service(1, index++, { 'meshd.lb': 'least-conn' }); },
  };
}

async function measure(services: number): Promise<Record<string, number>> {
  const e = engine(services);
  const server = new PeerServer(TOKEN, silentLogger());
  const port = await server.listen('127.0.0.1', 0);
  let next: (() => void) | undefined;
  let snapshot: SwarmSnapshot | undefined;
  let change: SwarmChange | undefined;
  const discovery = new SwarmDiscovery({
    docker: e.reader, log: silentLogger(), taskPollInterval: 3_600_000, resyncInterval: 3_600_000,
    onSnapshot: (s, c) => { snapshot = s; change = c; next?.(); }, onError: (err) => { throw err; },
  });
  const read = async () => {
    const got = new Promise<void>((r) => { next = r; });
    discovery.refreshSoon(true);
    await got;
  };
  await read();
  // Sizes of the lines received, heartbeats (empty lines) left out.
  const lines: number[] = [];
  let partial = 0;
  const res = await request(`http://127.0.0.1:${port}${SNAPSHOTS_PATH}`, { headers: { authorization: `Bearer ${TOKEN}`, [FEATURES_HEADER]: DELTAS_FEATURE } });
  res.body.on('data', (c: Buffer) => {
    let from = 0;
    for (let nl = c.indexOf(10); nl >= 0; from = nl + 1, nl = c.indexOf(10, from)) {
      if (partial + nl - from > 0) lines.push(partial + nl - from + 1);
      partial = 0;
    }
    partial += c.length - from;
  });
  /** Bytes a follower receives for one publish, and the publish's CPU time. */
  const wire = async (): Promise<[number, number]> => {
    const before = lines.length;
    const t0 = process.cpuUsage();
    server.publish(snapshot!, change);
    const cpu = process.cpuUsage(t0);
    while (lines.length === before) await new Promise((r) => setTimeout(r, 10));
    return [lines.at(-1)!, (cpu.user + cpu.system) / 1000];
  };
  while (!lines.length) await new Promise((r) => setTimeout(r, 10)); // the hello line
  // A worker meshd, in its own process so its CPU is its own.
  const worker: ChildProcess = fork(fileURLToPath(new URL('./worker-follower.js', import.meta.url)), [`127.0.0.1:${port}`, TOKEN], { execArgv: ['--max-old-space-size=4096'] });
  const reports: { cpuMs: number; rssMiB: number; routes: number }[] = [];
  worker.on('message', (m: { cpuMs?: number; rssMiB?: number; routes?: number; error?: string }) => {
    if (m.error) process.stderr.write(`worker: ${m.error}\n`);
    else reports.push(m as { cpuMs: number; rssMiB: number; routes: number });
  });
  const applied = async (n: number) => {
    while (reports.length < n) await new Promise((r) => setTimeout(r, 10));
    return reports[n - 1]!;
  };
  const [full, fullMs] = await wire();
  const out: Record<string, number> = { 'first (full) snapshot': full, 'first publish ms': fullMs };
  // The worker connects on its own: its first table comes from whatever full line it gets.
  const first = await applied(1);
  out['worker: first table ms'] = first.cpuMs;
  for (const [name, change] of [['task drains', e.drain], ['task starts', e.start], ['task stops', e.stop], ['service label changes', e.relabel]] as const) {
    const seen = reports.length;
    change();
    await read();
    const [b, ms] = await wire();
    out[`delta: ${name}`] = b;
    out[`delta publish ms: ${name}`] = ms;
    out[`worker ms: ${name}`] = (await applied(seen + 1)).cpuMs;
  }
  out['worker RSS MiB'] = reports.at(-1)!.rssMiB;
  worker.disconnect();
  // What main sends every follower on every change: the whole snapshot, engine objects as read.
  const t0 = process.cpuUsage();
  out['before: whole snapshot per change'] = Buffer.byteLength(JSON.stringify(e.raw()) + '\n');
  const cpu = process.cpuUsage(t0);
  out['before: publish ms'] = (cpu.user + cpu.system) / 1000;
  discovery.stop();
  await server.close();
  return out;
}

const results: Record<string, Record<string, number>> = {};
for (const n of [1000, 10_000]) results[`${n} services`] = await measure(n);
const rows = Object.keys(Object.values(results)[0]!);
const fmt = (v: number, k: string) => (k.includes('ms') ? v.toFixed(1) : v.toLocaleString('en-US'));
process.stdout.write(`| per follower | ${Object.keys(results).join(' | ')} |\n|---|${Object.keys(results).map(() => '---:').join('|')}|\n`);
for (const k of rows) process.stdout.write(`| ${k} | ${Object.values(results).map((r) => fmt(r[k]!, k)).join(' | ')} |\n`);
process.exit(0);
