// Starts each load balancer under test on loopback in front of the same two
// backends, with its configuration generated here.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { family } from './proc.js';

export const MESHD_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/main.js');

export interface Running {
  name: string;
  pid: number;
  child: ChildProcess;
}

/** Every process the suite started, killed on exit however the suite ends. */
export const started = new Set<ChildProcess>();
/** Kills a process and its children (nginx workers outlive a killed master otherwise). */
export function killTree(child: ChildProcess): void {
  if (child.exitCode !== null || child.pid === undefined) return;
  for (const pid of family(child.pid).reverse()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}
function killAll(): void {
  for (const c of started) killTree(c);
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { killAll(); process.exit(130); });

export function track(child: ChildProcess): ChildProcess {
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

/** Refuses to start a target on a port something else (a leftover of an earlier run) holds. */
export async function assertFree(port: number): Promise<void> {
  const free = await new Promise<boolean>((resolve) => {
    const s = net.createServer().once('error', () => resolve(false)).listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
  if (!free) throw new Error(`port ${port} is in use: a leftover of an earlier run? (stop it, then run again)`);
}

export async function waitPort(port: number, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port} after ${ms} ms`);
}

export interface Ports {
  backends: [number, number];
  meshdHttp: number;
  meshdTcp: number;
  meshdAdmin: number;
  haproxyHttp: number;
  haproxyTcp: number;
  nginx: number;
}

export async function startMeshd(dir: string, p: Ports, extraFlags: string[] = []): Promise<Running> {
  for (const port of [p.meshdHttp, p.meshdTcp, p.meshdAdmin]) await assertFree(port);
  const routes = path.join(dir, 'meshd-routes.yml');
  const backends = p.backends.map((b) => `"127.0.0.1:${b}"`).join(', ');
  fs.writeFileSync(routes, `routes:
  - { name: http, publish: ${p.meshdHttp}, mode: http, backends: [${backends}], health: { interval: 5s } }
  - { name: tcp, publish: ${p.meshdTcp}, mode: tcp, backends: [${backends}], health: { interval: 5s } }
`);
  const child = track(spawn(process.execPath, [MESHD_MAIN, '--provider', 'file', '--routes', routes, '--listen-host', '127.0.0.1',
    '--admin-addr', `127.0.0.1:${p.meshdAdmin}`, '--log-level', 'warn', ...extraFlags], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitPort(p.meshdHttp);
  await waitPort(p.meshdTcp);
  return { name: 'meshd', pid: child.pid!, child };
}

export async function startHaproxy(dir: string, p: Ports): Promise<Running> {
  for (const port of [p.haproxyHttp, p.haproxyTcp]) await assertFree(port);
  const cfg = path.join(dir, 'haproxy.cfg');
  const servers = p.backends.map((b, i) => `  server s${i} 127.0.0.1:${b}`).join('\n');
  fs.writeFileSync(cfg, `global
  maxconn 8000
defaults
  timeout connect 3s
  timeout client 60s
  timeout server 60s
frontend fh
  mode http
  bind 127.0.0.1:${p.haproxyHttp}
  default_backend bh
backend bh
  mode http
  balance roundrobin
  http-reuse always
${servers}
frontend ft
  mode tcp
  bind 127.0.0.1:${p.haproxyTcp}
  default_backend bt
backend bt
  mode tcp
  balance roundrobin
${servers}
`);
  const child = track(spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitPort(p.haproxyHttp);
  return { name: 'haproxy', pid: child.pid!, child };
}

export async function startNginx(dir: string, p: Ports): Promise<Running> {
  await assertFree(p.nginx);
  const cfg = path.join(dir, 'nginx.conf');
  const servers = p.backends.map((b) => `    server 127.0.0.1:${b};`).join('\n');
  fs.writeFileSync(cfg, `worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  upstream backends {
${servers}
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${p.nginx} backlog=1024;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`);
  const child = track(spawn('nginx', ['-p', dir, '-c', cfg, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitPort(p.nginx);
  return { name: 'nginx', pid: child.pid!, child };
}
