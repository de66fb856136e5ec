#!/usr/bin/env node
// meshd's command line: read the config, start, and stop gracefully on SIGTERM.
import { ConfigError, helpText, parseConfig } from './config.js';
import { createLogger } from './core/log.js';
import { SourceError } from './discovery/source.js';
import { startMeshd } from './meshd.js';

async function main(): Promise<void> {
  let config;
  try {
    config = parseConfig(process.argv.slice(2));
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
  let meshd;
  try {
    meshd = await startMeshd(config, log);
  } catch (err) {
    if (!(err instanceof SourceError || err instanceof ConfigError)) throw err;
    process.stderr.write(`meshd: ${err.message}\n`);
    process.exit(2);
  }
  log.info({ admin: `${config.adminAddr.host}:${config.adminAddr.port}`, provider: config.provider }, 'meshd started');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, drainTimeout: config.drainTimeout }, 'stopping: no new connections, letting in-flight work finish');
    await meshd.stop();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`meshd: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
