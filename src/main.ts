#!/usr/bin/env node
// meshd's command line: read the config, start, and stop gracefully on SIGTERM
// or SIGINT, whatever state meshd is in; a second signal ends it at once.
import os from 'node:os';
import { runStatus } from './cli/status.js';
import { ConfigError, helpText, parseConfig } from './config.js';
import { createLogger } from './core/log.js';
import { SourceError } from './discovery/source.js';
import { startMeshd, type Meshd } from './meshd.js';

/** Time beyond --drain-timeout that a graceful stop may take before meshd exits anyway. */
const STOP_GRACE_MS = 5000;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'status') process.exit(await runStatus(argv.slice(1)));
  let config;
  try {
    config = parseConfig(argv);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`meshd: ${err.message}\n`);
    process.exit(2);
  }
  if (config === 'help') {
    process.stdout.write(helpText());
    return;
  }
  const log = createLogger(config.logLevel);
  const { drainTimeout } = config;

  // Signals are handled from the start: one that comes while meshd starts (an
  // engine that never answers holds the start) cancels the start.
  const starting = new AbortController();
  let meshd: Meshd | undefined;
  let stopping = false;
  const finish = (m: Meshd) => {
    m.stop().then(() => {
      log.info('stopped');
      process.exit(0);
    }, (err: unknown) => {
      log.error({ err: (err as Error).message }, 'stop failed');
      process.exit(1);
    });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting for in-flight work');
      process.exit(128 + os.constants.signals[signal]);
    }
    stopping = true;
    log.info({ signal, drainTimeout }, 'stopping: no new connections, letting in-flight work finish');
    // Whatever might still hold the stop open, meshd ends.
    setTimeout(() => {
      log.error({ waited: drainTimeout + STOP_GRACE_MS }, 'stop did not finish in time; exiting');
      process.exit(1);
    }, drainTimeout + STOP_GRACE_MS);
    if (meshd) finish(meshd);
    else starting.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    meshd = await startMeshd(config, log, undefined, starting.signal);
  } catch (err) {
    if (stopping) {
      log.info({ err: (err as Error).message }, 'stopped before the start completed');
      process.exit(0);
    }
    if (!(err instanceof SourceError || err instanceof ConfigError)) throw err;
    process.stderr.write(`meshd: ${err.message}\n`);
    process.exit(2);
  }
  log.info({ admin: `${config.adminAddr.host}:${config.adminAddr.port}`, provider: config.provider, workers: config.workers }, 'meshd started');
  // The signal came after the last point where the start could be cancelled.
  if (stopping) finish(meshd);
}

main().catch((err: unknown) => {
  process.stderr.write(`meshd: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
