// Docker API calls and bytes a manager's swarm discovery makes per second, at
// rest and during a rolling update, on a lab swarm (test/swarm/lab.sh, root;
// 1 node, or 3 with --nodes 3: the first a manager, where discovery reads)
// with labelled and unlabelled services and old tasks from updates. Other
// discovery modules may be given on the command line, so another build's
// (e.g. main's) can be measured on the same lab.
//
//   npm run build && node dist/bench/engine-calls.js [--nodes N] [path/to/dist/src/discovery/swarm.js ...]
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { silentLogger } from '../src/core/log.js';
import * as ours from '../src/discovery/swarm.js';
import { DockerApiProxy } from '../test/swarm/docker-proxy.js';
import { docker, labDown, labUp } from '../test/swarm/lab.js';

const REST_S = 20;
const UPDATE_S = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const argv = process.argv.slice(2);
const at = argv.indexOf('--nodes');
const nodes = at < 0 ? 1 : Number(argv.splice(at, 2)[1]);
if (!Number.isInteger(nodes) || nodes < 1 || nodes > 3) throw new Error('--nodes takes 1 to 3');
const modules = argv;

const lab = labUp(nodes);
const node = lab.nodes[0]!;
const rows: string[] = [];
try {
  const create = (name: string, labels: string[]) => docker(node, 'service', 'create', '--detach', '--no-resolve-image', '--name', name, '--network', 'meshd',
    ...labels.flatMap((l) => ['--label', l]), '--replicas', '2', '--update-order', 'start-first', '--stop-grace-period', '3s', 'meshlab/busybox:latest', 'httpd', '-f', '-p', '80', '-h', '/www');
  for (let i = 0; i < 3; i++) await create(`web${i}`, [`meshd.publish=${18080 + i}:80/http`]);
  for (let i = 0; i < 3; i++) await create(`plain${i}`, []);
  // Old tasks: two forced updates of every service.
  for (let round = 0; round < 2; round++) {
    for (const name of ['web0', 'web1', 'web2', 'plain0', 'plain1', 'plain2']) await docker(node, 'service', 'update', '--detach', '--force', name);
    await sleep(12_000);
  }
  const tasks = (await docker(node, 'service', 'ps', '-q', 'web0', 'web1', 'web2', 'plain0', 'plain1', 'plain2')).split('\n').length;
  rows.push(`# ${nodes} node${nodes > 1 ? 's' : ''}, ${tasks} tasks in the swarm, 12 running`);
  for (const [name, file] of [['this build', undefined], ...modules.map((m) => [m, m])] as [string, string | undefined][]) {
    const mod = (file ? await import(pathToFileURL(path.resolve(file)).href) : ours) as typeof ours;
    const proxy = new DockerApiProxy(path.join(os.tmpdir(), `meshd-calls-${process.pid}.sock`), node.sock);
    await proxy.start();
    const discovery = new mod.SwarmDiscovery({
      docker: mod.dockerFromHost(`unix://${proxy.listenPath}`), log: silentLogger(), taskPollInterval: 1000, resyncInterval: 10_000,
      onSnapshot: () => undefined, onError: (err) => process.stderr.write(`${(err as Error).message}\n`),
    });
    discovery.start();
    await sleep(3000);
    const window = async (seconds: number, what: string) => {
      const [calls, bytes] = [proxy.requests.length, proxy.responseBytes];
      await sleep(seconds * 1000);
      const n = proxy.requests.length - calls;
      rows.push(`| ${name} | ${what} | ${(n / seconds).toFixed(2)} | ${Math.round((proxy.responseBytes - bytes) / seconds).toLocaleString('en-US')} |`);
    };
    await window(REST_S, 'at rest');
    await docker(node, 'service', 'update', '--detach', '--force', 'web0');
    await window(UPDATE_S, 'rolling update of one labelled service');
    discovery.stop();
    await proxy.stop();
    await sleep(8000);
  }
} finally {
  labDown();
}
process.stdout.write(`| discovery | when | API calls/s | bytes/s read |\n|---|---|---:|---:|\n${rows.filter((r) => r.startsWith('|')).join('\n')}\n${rows.filter((r) => r.startsWith('#')).join('\n')}\n`);
process.exit(0);
