// Runs meshd in-process against a routes file in a temp dir, the way the CLI
// does, so tests can rewrite the file and read the live table.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig, type Config } from '../../src/config.js';
import { silentLogger, type Logger } from '../../src/core/log.js';
import { startMeshd, type Meshd } from '../../src/meshd.js';
import { freePort, waitFor } from './net.js';

export interface FileRoute {
  name: string;
  publish: number;
  mode?: 'tcp' | 'http' | 'https';
  hosts?: string[];
  paths?: string[];
  stripPrefix?: boolean;
  lb?: 'round-robin' | 'least-conn' | 'p2c' | 'source-hash';
  sticky?: string;
  backends: string[];
  health?: Record<string, string | number>;
  proxyProtocol?: boolean;
  maxConnections?: number;
  idleTimeout?: string;
  redirect?: string;
  hsts?: string;
  tls?: 'acme';
  backend?: 'http1' | 'h2c';
}

export class TestMeshd {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-test-'));
  readonly routesFile = path.join(this.dir, 'routes.yml');
  /** Top-level keys of the routes file besides `routes` (such as `tls`). */
  extra: Record<string, unknown> = {};
  /** Where meshd logs; set before start to read its lines. */
  log: Logger = silentLogger();
  meshd!: Meshd;
  config!: Config;
  adminPort = 0;

  async start(routes: FileRoute[], flags: string[] = []): Promise<this> {
    this.writeRoutes(routes);
    this.adminPort = await freePort();
    const config = parseConfig([
      '--provider', 'file', '--routes', this.routesFile, '--listen-host', '127.0.0.1',
      '--admin-addr', `127.0.0.1:${this.adminPort}`, '--health-interval', '200ms', '--health-timeout', '150ms',
      '--health-rise', '2', '--health-fall', '2', '--drain-timeout', '5s', '--tls-dir', path.join(this.dir, 'tls'), '--workers', '1', ...flags,
    ], {});
    if (config === 'help') throw new Error('unexpected help');
    this.config = config;
    this.meshd = await startMeshd(config, this.log);
    await waitFor(() => this.meshd.table.loaded, 5000, 'first table');
    await this.probed();
    return this;
  }

  /** Waits for the listeners and for every new backend's first probe (passed or failed). */
  async probed(): Promise<void> {
    await this.meshd.settled();
    await waitFor(() => [...this.meshd.table.allBackends()].every((b) => !b.pending || b.lastProbeError !== undefined || b.draining), 5000, 'first probes');
  }

  writeRoutes(routes: FileRoute[]): void {
    // Write-then-rename, as editors and config tools do, so meshd never reads half a file.
    const tmp = `${this.routesFile}.tmp`;
    fs.writeFileSync(tmp, stringify({ routes, ...this.extra }));
    fs.renameSync(tmp, this.routesFile);
  }

  /** Rewrites the routes file and waits until the table has taken it in. */
  async update(routes: FileRoute[]): Promise<void> {
    const before = this.meshd.table.version;
    this.writeRoutes(routes);
    await waitFor(() => this.meshd.table.version > before, 5000, 'table update');
    await this.probed();
  }

  backend(port: number, address: string) {
    const route = [...this.meshd.table.routes.values()].find((r) => r.spec.port === port);
    return [...(route?.backends.values() ?? [])].find((b) => `${b.host}:${b.port}` === address);
  }

  async stop(): Promise<void> {
    await this.meshd?.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
