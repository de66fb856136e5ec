// Passive ejection: what the proxy sees on live traffic. A refused or timed-out
// connect takes a backend out at once; resets count, and a few in a row take it
// out. Only the prober brings an ejected backend back (see recordProbe).
import { isConnectError, errorCodeOf } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Backend } from '../table/table.js';

export const RESETS_TO_EJECT = 3;

export function reportFailure(b: Backend, err: unknown, log: Logger): void {
  const code = errorCodeOf(err);
  b.countError(code);
  b.consecutiveFailures++;
  if (b.ejected) return;
  if (isConnectError(err) || b.consecutiveFailures >= RESETS_TO_EJECT) {
    b.okStreak = 0;
    b.setFlag('ejected', true);
    log.warn({ route: b.route.spec.name, backend: b.key, code }, 'backend ejected after failed traffic');
  }
}

export function reportSuccess(b: Backend): void {
  if (b.consecutiveFailures !== 0) b.consecutiveFailures = 0;
}
