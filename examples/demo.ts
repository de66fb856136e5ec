// `npm run demo`: meshd's main job, shown end to end.
//   - As root on a machine with Docker Engine (Debian's docker.io): a local 3-node
//     swarm in network namespaces, meshd deployed from deploy/stack.yml, and the
//     example apps opted in by label. Any node's address serves every app.
//   - Otherwise (or with --local): meshd with the routes file examples/routes.yml
//     in front of two whoami instances and a counter on loopback.
// Ctrl-C stops everything it started.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { counter, listen, whoami } from './apps.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const lab = path.join(root, 'test/swarm/lab.sh');

function canRunSwarm(): boolean {
  if (process.argv.includes('--local') || process.getuid?.() !== 0) return false;
  return spawnSync('sh', ['-c', 'command -v dockerd && test -x /bin/busybox && { command -v redis-server || command -v redis-check-rdb; }'], { stdio: 'ignore' }).status === 0;
}

async function localDemo(): Promise<void> {
  const apps = [whoami('whoami-1'), whoami('whoami-2'), counter()];
  await Promise.all(apps.map((app, i) => listen(app, 9001 + i)));
  const meshd = spawn(process.execPath, [
    path.join(root, 'dist/src/main.js'),
    '--provider', 'file',
    '--routes', path.join(root, 'examples/routes.yml'),
    '--listen-host', '127.0.0.1',
    '--log-level', process.env.MESHD_LOG_LEVEL ?? 'info',
  ], { stdio: 'inherit' });
  process.stdout.write(`
meshd demo (no swarm here: routes file examples/routes.yml; run as root with docker.io installed for the swarm demo)
  curl http://127.0.0.1:8080/                              round-robin over whoami-1, whoami-2 (L7)
  curl -H 'Host: counter.local.dev' http://127.0.0.1:8080/  the counter, routed by host
  curl http://127.0.0.1:8081/                              the same whoamis through L4 (tcp)
  curl http://127.0.0.1:9900/api/routes                    the live table with health
  curl http://127.0.0.1:9900/metrics                       Prometheus metrics
Edit examples/routes.yml while it runs; Ctrl-C stops everything.

`);
  const stop = () => meshd.kill('SIGTERM');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  meshd.on('exit', (code) => {
    for (const app of apps) app.close();
    process.exit(code ?? 0);
  });
}

function swarmDemo(): void {
  const down = () => spawnSync('bash', [lab, 'down'], { stdio: 'inherit' });
  const sh = (cmd: string, args: string[], input?: string) => execFileSync(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'inherit'], input, encoding: 'utf8' });
  process.on('SIGINT', () => { down(); process.exit(0); });
  process.on('SIGTERM', () => { down(); process.exit(0); });
  try {
    process.stdout.write('starting a 3-node swarm in network namespaces...\n');
    const env = sh('bash', [lab, 'up', '3']);
    const vars = Object.fromEntries([...env.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    const sock = vars.MESHLAB_NODE1_SOCK!;
    const addrs = [1, 2, 3].map((n) => vars[`MESHLAB_NODE${n}_ADDR`]!);
    const dk = (...args: string[]) => sh('docker', ['-H', `unix://${sock}`, ...args]);
    process.stdout.write('building the meshd image from the Dockerfile (offline base image)...\n');
    sh('bash', [path.join(root, 'test/swarm/images.sh')]);
    sh('docker', ['-H', `unix://${sock}`, 'secret', 'create', 'meshd_token', '-'], `demo-${Date.now()}-${Math.random()}\n`);
    dk('stack', 'deploy', '-c', path.join(root, 'deploy/stack.yml'), 'meshd');
    const app = (name: string, ...args: string[]) => dk('service', 'create', '--detach', '--no-resolve-image', '--name', name, '--network', 'meshd', ...args, 'meshlab/whoami:latest');
    app('whoami', '--replicas', '3', '--label', 'meshd.publish=8080:80/http');
    // The classic demo's page-view counter: two replicas sharing one count in Redis
    // (dnsrr, so `redis` resolves to its task: a service VIP needs IPVS).
    dk('service', 'create', '--detach', '--no-resolve-image', '--name', 'redis', '--network', 'meshd', '--endpoint-mode', 'dnsrr', 'meshlab/redis:latest');
    app('counter', '--replicas', '2', '--env', 'MODE=counter', '--env', 'REDIS=redis:6379', '--label', 'meshd.publish=80:80/http', '--label', 'meshd.hosts=counter.local.dev');
    app('whoami-tcp', '--replicas', '2', '--label', 'meshd.publish=9000:80');
    process.stdout.write(`
meshd demo: a 3-node swarm (node1 manager; nodes at ${addrs.join(', ')}), meshd on every node
  curl http://${addrs[1]}:8080/                                 whoami (3 replicas) from any node, round-robin
  curl -H 'Host: counter.local.dev' http://${addrs[2]}/          the Redis-backed counter (2 replicas), routed by host
  curl http://${addrs[0]}:9000/                                 whoami over L4 (tcp)
  curl http://${addrs[0]}:9900/api/routes                       the live table with health (any node)
  docker -H unix://${sock} service scale whoami=5               and watch the table follow
Ctrl-C tears the swarm down.
`);
    setInterval(() => {}, 1 << 30);
  } catch (err) {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    down();
    process.exit(1);
  }
}

if (canRunSwarm()) swarmDemo();
else await localDemo();
