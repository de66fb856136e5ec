// One pino root logger; each component takes a child with `component` set, so
// log lines can be filtered by the part of meshd that wrote them.
import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Lines go to stdout synchronously: nothing is left buffered at exit. pino's
 * asynchronous default flushes its buffer in an exit hook that retries a write
 * forever when stdout's reader has gone (EPIPE), so meshd could not exit; with
 * sync writes the first EPIPE just turns logging off.
 */
export function createLogger(level: string, destination: pino.DestinationStream = pino.destination({ dest: 1, sync: true })): Logger {
  return pino({ level, base: { app: 'meshd' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
