// Starts the backends and each load balancer under test on loopback, in front of
// the same two backends (round-robin, keep-alive upstream), with configurations
// generated into the run's temp dir. Every process goes on the cleanup list.
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { HERE, ready, track, waitPort } from './harness.js';

/** meshd's CLI in the same build as this file, whatever the outDir. */
const MESHD_MAIN = path.resolve(HERE, '../src/main.js');

export interface Running {
  name: string;
  pid: number;
  child: ChildProcess;
}

const running = (name: string, child: ChildProcess): Running => ({ name, pid: child.pid!, child });

/** The command and arguments, run under `taskset -c CPU` when a core is given (taskset execs it: same pid). */
const pinned = (cpu: number | undefined, cmd: string, args: string[]): [string, string[]] =>
  cpu === undefined ? [cmd, args] : ['taskset', ['-c', String(cpu), cmd, ...args]];

/** Installs haproxy and nginx (and any `extra` [command, Debian package]) from Debian's packages when missing (the suite runs as root). */
export function ensureTools(extra: [string, string][] = []): void {
  const tools: [string, string][] = [['haproxy', 'haproxy'], ['nginx', 'nginx-light'], ...extra];
  const missing = tools.filter(([t]) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  process.stderr.write(`installing ${missing.join(', ')} from Debian's packages (apt-get)...\n`);
  const r = spawnSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing.join(' ')}`], { stdio: 'inherit', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`could not install ${missing.join(', ')}`);
}

/** First line of `haproxy -v` / `nginx -v`, for the report. */
export function toolVersions(): { haproxy: string; nginx: string } {
  const first = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return `${r.stdout}${r.stderr}`.split('\n')[0]!.trim();
  };
  return { haproxy: first('haproxy', ['-v']), nginx: first('nginx', ['-v']) };
}

export async function startBackends(ports: number[]): Promise<Running> {
  const child = track(fork(path.join(HERE, 'backend.js'), ports.map(String), { stdio: 'ignore' }));
  await ready(child);
  return running('backends', child);
}

export interface MeshdPorts {
  http?: number;
  tcp?: number;
  admin: number;
}

/** meshd from this build serving an `http` and/or a `tcp` route over the backends: one process, or `workers` (pinned to `cpu` if given). */
export async function startMeshd(dir: string, ports: MeshdPorts, backends: number[], workers = '1', cpu?: number): Promise<Running> {
  const list = backends.map((b) => `"127.0.0.1:${b}"`).join(', ');
  const routes = [
    ports.http && `  - { name: web, publish: ${ports.http}, mode: http, backends: [${list}], health: { interval: 5s, timeout: 1s } }`,
    ports.tcp && `  - { name: web-tcp, publish: ${ports.tcp}, mode: tcp, backends: [${list}], health: { interval: 5s, timeout: 1s } }`,
  ].filter(Boolean);
  const file = path.join(fs.mkdtempSync(path.join(dir, 'meshd-')), 'routes.yml');
  fs.writeFileSync(file, `routes:\n${routes.join('\n')}\n`);
  return spawnMeshd(file, ports.admin, [ports.http, ports.tcp].filter((p): p is number => p !== undefined), 'warn', cpu, workers);
}

/** meshd on a given routes file, one process unless `workers` says otherwise; resolves once the admin port and `listen` ports accept. */
export async function spawnMeshd(routesFile: string, admin: number, listen: number[], logLevel = 'warn', cpu?: number, workers = '1'): Promise<Running> {
  const child = track(spawn(...pinned(cpu, process.execPath, [MESHD_MAIN, '--provider', 'file', '--routes', routesFile, '--listen-host', '127.0.0.1',
    '--admin-addr', `127.0.0.1:${admin}`, '--log-level', logLevel, '--workers', workers]), { stdio: ['ignore', 'ignore', 'inherit'] }));
  for (const port of [admin, ...listen]) await waitPort(port, child);
  return running('meshd', child);
}

/** bench/node-tls.js: node's TLS and http2 answering by themselves, no proxying. */
export async function startNodeTls(port: number, certFile: string, keyFile: string, cpu?: number): Promise<Running> {
  const child = track(spawn(...pinned(cpu, process.execPath, [path.join(HERE, 'node-tls.js'), String(port), certFile, keyFile]), { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitPort(port, child);
  return running('node tls', child);
}

export interface HaproxyPorts {
  http?: number;
  tcp?: number;
  /** `mode http` behind TLS: a PEM file with the certificate and its key, ALPN h2 and http/1.1. */
  https?: { port: number; pem: string };
}

export interface HaproxyOptions {
  /** `nbthread`; HAProxy's default is one thread per core. */
  threads?: number;
  cpu?: number;
  /** A stats socket (`show info`) at this path. */
  statsSocket?: string;
}

/** HAProxy: `mode http` with `http-reuse always` (plain and/or TLS) and/or `mode tcp`, default threads (one per core), foreground (-db). */
export async function startHaproxy(dir: string, ports: HaproxyPorts, backends: number[], opt: HaproxyOptions = {}): Promise<Running> {
  const servers = backends.map((b, i) => `  server s${i} 127.0.0.1:${b}`).join('\n');
  const global = ['maxconn 8000', opt.threads && `nbthread ${opt.threads}`, opt.statsSocket && `stats socket ${opt.statsSocket} level admin`].filter(Boolean);
  const l7 = (name: string, bind: string) => `frontend f${name}\n  mode http\n  bind ${bind}\n  default_backend b${name}\nbackend b${name}\n  mode http\n  balance roundrobin\n  http-reuse always\n${servers}`;
  const sections = [
    `global\n${global.map((g) => `  ${g}`).join('\n')}\ndefaults\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  maxconn 8000`,
    ports.http && l7('h', `127.0.0.1:${ports.http}`),
    ports.https && l7('s', `127.0.0.1:${ports.https.port} ssl crt ${ports.https.pem} alpn h2,http/1.1`),
    ports.tcp && `frontend ft\n  mode tcp\n  bind 127.0.0.1:${ports.tcp}\n  default_backend bt\nbackend bt\n  mode tcp\n  balance roundrobin\n${servers}`,
  ].filter(Boolean);
  const cfg = path.join(fs.mkdtempSync(path.join(dir, 'haproxy-')), 'haproxy.cfg');
  fs.writeFileSync(cfg, sections.join('\n') + '\n');
  const child = track(spawn(...pinned(opt.cpu, 'haproxy', ['-db', '-f', cfg]), { stdio: ['ignore', 'ignore', 'inherit'] }));
  for (const port of [ports.http, ports.tcp, ports.https?.port]) if (port) await waitPort(port, child);
  return running('haproxy', child);
}

/** nginx in the foreground with a private prefix, pid file, error log and temp dirs; `http` is the inside of its `http` block. */
async function spawnNginx(dir: string, port: number, workers: string, http: string, cpu?: number): Promise<Running> {
  const prefix = fs.mkdtempSync(path.join(dir, 'nginx-'));
  const cfg = path.join(prefix, 'nginx.conf');
  fs.writeFileSync(cfg, `worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${http}
}
`);
  const child = track(spawn(...pinned(cpu, 'nginx', ['-p', prefix, '-c', cfg, '-e', path.join(prefix, 'error.log'), '-g', 'daemon off;']), { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitPort(port, child);
  return running('nginx', child);
}

/** nginx: upstream `keepalive`, one worker per core. */
export function startNginx(dir: string, port: number, backends: number[]): Promise<Running> {
  const servers = backends.map((b) => `    server 127.0.0.1:${b};`).join('\n');
  return spawnNginx(dir, port, 'auto', `  upstream backends {
${servers}
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port} backlog=1024;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`);
}

/** nginx as a backend: one worker answering every request itself with `body` (`return 200`) and `/64k` from a file, keep-alive without a request limit. */
export function startNginxOrigin(dir: string, port: number, body: string, cpu?: number): Promise<Running> {
  // /64k: a 64 KiB file, for the large-answer scenarios. nginx's workers read it as nobody,
  // so the run's directories (mkdtemp makes them 0700) must let them through.
  const files = fs.mkdtempSync(path.join(dir, 'origin-'));
  for (const d of [dir, files]) fs.chmodSync(d, 0o755);
  const big = path.join(files, '64k');
  fs.writeFileSync(big, 'x'.repeat(64 * 1024), { mode: 0o644 });
  return spawnNginx(dir, port, '1', `  keepalive_requests 100000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:${port} backlog=1024;
    location / { default_type text/plain; return 200 "${body}"; }
    location = /64k { default_type text/plain; alias ${big}; }
  }`, cpu);
}
