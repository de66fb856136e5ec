// `npm run demo` on a machine without a swarm: two whoami instances and a
// counter on loopback, and meshd in front of them with examples/routes.yml.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { counter, listen, whoami } from './apps.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
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
meshd demo: two whoami instances and a counter behind meshd (routes: examples/routes.yml)
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
