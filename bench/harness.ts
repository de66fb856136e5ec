// What every phase of the suite shares: the cleanup list (every child killed by
// pid, with its own children, on exit, on error and on Ctrl-C), loopback ports
// picked free in 18000–18999, and the load generator run as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, LoadSpec } from './load.js';
import { family } from './proc.js';

export const HERE = path.dirname(fileURLToPath(import.meta.url));

const started = new Set<ChildProcess>();

/** Adds a child to the cleanup list; it leaves the list when it exits. */
export function track<T extends ChildProcess>(child: T): T {
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

/** SIGKILLs a child and its descendants (nginx workers would outlive their master), deepest first. */
export function killTree(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  for (const pid of family(child.pid).reverse()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export function killAll(): void {
  for (const child of started) killTree(child);
}

process.on('exit', killAll);
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping ${started.size} child process(es)\n`);
    killAll();
    process.exit(code);
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const handedOut = new Set<number>();
let cursor = Math.floor(Math.random() * 1000);

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** A loopback port in 18000–18999 that nothing listens on and this run has not handed out yet. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 1000; i++) {
    const port = 18000 + (cursor++ % 1000);
    if (handedOut.has(port)) continue;
    if (await canBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port left in 18000-18999');
}

/** Resolves once something accepts on the port; fails early if `child` exits first. */
export async function waitPort(port: number, child?: ChildProcess, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`process ${child.pid} exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port} after ${ms} ms`);
}

/** Waits for a forked child's first IPC message (its "ready"). */
export function ready(child: ChildProcess, ms = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`process ${child.pid} not ready after ${ms} ms`)), ms);
    child.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process ${child.pid} exited (${code}) before it was ready`));
    });
  });
}

/** One autocannon run in its own process (bench/load.ts), killed if it overruns. */
export function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(process.execPath, [path.join(HERE, 'load.js'), JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    const timer = setTimeout(() => killTree(child), (spec.duration + 20) * 1000);
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out) as LoadResult);
      else reject(new Error(`load generator exited (${code ?? signal}) for ${spec.url}`));
    });
  });
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const round = (x: number, digits = 0): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
