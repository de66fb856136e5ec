// SIGTERM ends the meshd command whatever state it is in: starting against an
// engine that never answers, with a broken routes file, with the Docker API or
// every peer down, under load, or with nobody left reading its log; a second
// signal ends it at once. Each test runs the real CLI as a child process.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Backend, freePort, get, waitFor } from '../support/net.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');
/** --drain-timeout of most tests; a stop must end within it plus STOP_SLACK_MS. */
const DRAIN_MS = 2000;
/** Room for a loaded machine: process exit, the log, the admin server closing. */
const STOP_SLACK_MS = 4000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Running {
  child: ChildProcess;
  admin: number;
  exited: Promise<Exit>;
  logs(): string;
}

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-signals-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts `meshd` with loopback addresses; t.after kills it by pid whatever the test's outcome. */
async function startCli(t: TestContext, args: string[]): Promise<Running> {
  const admin = await freePort();
  const child = spawn(process.execPath, [
    MAIN, '--listen-host', '127.0.0.1', '--admin-addr', `127.0.0.1:${admin}`, '--peer-addr', '127.0.0.1:0',
    '--peer-token-file', '/nonexistent/meshd-token', '--drain-timeout', `${DRAIN_MS}ms`, ...args,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH } });
  const pid = child.pid!;
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  });
  let logs = '';
  child.stdout!.on('data', (c) => (logs += c));
  child.stderr!.on('data', (c) => (logs += c));
  return { child, admin, exited, logs: () => logs };
}

async function started(m: Running): Promise<void> {
  await waitFor(async () => (await get(m.admin, '/healthz')).status === 200, 20_000, 'admin API up');
}

/** Closes the parent's end of meshd's stdout: its next log lines meet EPIPE. */
async function dropStdout(m: Running): Promise<void> {
  m.child.stdout!.destroy();
  await new Promise((r) => setTimeout(r, 200));
}

async function exitWithin(m: Running, ms: number): Promise<Exit & { after: number }> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`meshd still running ${ms} ms after the signal; log:\n${m.logs().slice(-2000)}`)), ms);
  });
  try {
    return { ...(await Promise.race([m.exited, timeout])), after: Date.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}

/** A graceful stop: SIGTERM, exit code 0 within the drain timeout plus slack. */
async function stopsGracefully(m: Running, drain = DRAIN_MS): Promise<void> {
  m.child.kill('SIGTERM');
  const exit = await exitWithin(m, drain + STOP_SLACK_MS);
  assert.deepEqual([exit.code, exit.signal], [0, null], m.logs().slice(-2000));
}

/** A TCP server that accepts connections and never answers: an engine or peer that hangs. */
async function silentServer(t: TestContext): Promise<{ port: number; connected: Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let connected!: () => void;
  const first = new Promise<void>((r) => (connected = r));
  const server = net.createServer((s) => {
    sockets.add(s);
    connected();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, connected: first };
}

/** An HTTP backend whose every answer takes `ms`; counts requests that reached it. */
async function slowBackend(t: TestContext, ms: number): Promise<Backend> {
  const timers = new Set<NodeJS.Timeout>();
  const b = await new Backend('slow', (_req, res) => {
    b.hits++;
    const timer = setTimeout(() => res.end('late'), ms);
    timers.add(timer);
  }).start();
  t.after(async () => {
    for (const timer of timers) clearTimeout(timer);
    await b.kill();
  });
  return b;
}

/**
 * Sends `n` requests through meshd's port, with no client timeout so that only
 * meshd ends them, and resolves once the backend holds them all.
 */
async function inFlight(t: TestContext, port: number, backend: Backend, n: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: n });
  t.after(() => agent.destroy());
  for (let i = 0; i < n; i++) {
    http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => res.resume()).on('error', () => { /* cut by the stop */ });
  }
  await waitFor(() => backend.hits >= n, 10_000, `${n} requests at the backend`);
}

async function httpRoute(t: TestContext, backend: Backend): Promise<{ routes: string; port: number }> {
  const port = await freePort();
  const routes = path.join(tempDir(t), 'routes.yml');
  fs.writeFileSync(routes, `routes:\n  - { name: web, publish: ${port}, mode: http, backends: ["${backend.address}"], health: { interval: 1s, timeout: 500ms } }\n`);
  return { routes, port };
}

describe('SIGTERM', () => {
  it('ends meshd while it starts against a Docker engine that never answers', async (t) => {
    const engine = await silentServer(t);
    const m = await startCli(t, ['--docker-host', `tcp://127.0.0.1:${engine.port}`]);
    await engine.connected;
    await stopsGracefully(m);
  });

  it('ends meshd with a broken routes file and no table', async (t) => {
    const routes = path.join(tempDir(t), 'routes.yml');
    fs.writeFileSync(routes, 'routes: [ { name: web, publish: nope');
    const m = await startCli(t, ['--provider', 'file', '--routes', routes]);
    await started(m);
    assert.equal((await get(m.admin, '/readyz')).status, 503, 'no table');
    await stopsGracefully(m);
  });

  it('ends meshd with a broken routes file when nobody reads its log any more (EPIPE)', async (t) => {
    const routes = path.join(tempDir(t), 'routes.yml');
    fs.writeFileSync(routes, 'routes: [ { name: web, publish: nope');
    const m = await startCli(t, ['--provider', 'file', '--routes', routes]);
    await started(m);
    await waitFor(() => m.logs().includes('route source failed'), 5000, 'the error logged');
    await dropStdout(m);
    await stopsGracefully(m);
  });

  it('ends meshd whose Docker API refuses connections', async (t) => {
    const m = await startCli(t, ['--docker-host', `tcp://127.0.0.1:${await freePort()}`]);
    await started(m);
    await stopsGracefully(m);
  });

  it('ends meshd whose Docker socket does not exist', async (t) => {
    const m = await startCli(t, ['--docker-host', 'unix:///nonexistent/meshd-test/docker.sock']);
    await started(m);
    await stopsGracefully(m);
  });

  it('ends a worker whose peers are unreachable or hang', async (t) => {
    const token = path.join(tempDir(t), 'token');
    fs.writeFileSync(token, 'secret\n');
    const hanging = await silentServer(t);
    const m = await startCli(t, [
      '--role', 'worker', '--peers', `127.0.0.1:${await freePort()},127.0.0.1:${hanging.port}`, '--peer-token-file', token,
      '--docker-host', 'unix:///nonexistent/meshd-test/docker.sock',
    ]);
    await started(m);
    await hanging.connected;
    await stopsGracefully(m);
  });

  it('ends meshd under load within the drain timeout, its log unread or not', async (t) => {
    for (const epipe of [false, true]) {
      const backend = await slowBackend(t, 60_000);
      const { routes, port } = await httpRoute(t, backend);
      const m = await startCli(t, ['--provider', 'file', '--routes', routes]);
      await started(m);
      await waitFor(async () => (await get(m.admin, '/readyz')).status === 200, 10_000, 'table loaded');
      await inFlight(t, port, backend, 20);
      if (epipe) await dropStdout(m);
      await stopsGracefully(m);
    }
  });
});

describe('a second signal', () => {
  for (const [second, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    it(`${second} during a long drain ends meshd at once`, async (t) => {
      const backend = await slowBackend(t, 60_000);
      const { routes, port } = await httpRoute(t, backend);
      const m = await startCli(t, ['--provider', 'file', '--routes', routes, '--drain-timeout', '30s']);
      await started(m);
      await waitFor(async () => (await get(m.admin, '/readyz')).status === 200, 10_000, 'table loaded');
      await inFlight(t, port, backend, 5);
      m.child.kill('SIGTERM');
      await waitFor(async () => (await get(m.admin, '/readyz')).status === 503, 5000, 'draining after the first SIGTERM');
      assert.equal(m.child.exitCode, null, 'still draining');
      m.child.kill(second);
      const exit = await exitWithin(m, 2000);
      assert.deepEqual([exit.code, exit.signal], [code, null]);
    });
  }
});
