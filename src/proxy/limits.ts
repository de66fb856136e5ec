// Limits on clients that the proxies share: the whole process's connection cap,
// a route's own cap (meshd.max-connections), and the L4 idle timeout. Each trip
// is counted in ProxyStats and shows in /metrics.
import type net from 'node:net';
import type { EventEmitter } from 'node:events';
import type { Route } from '../table/table.js';
import type { ProxyContext } from './context.js';

/**
 * Counts a new client connection, or closes it at once when the process holds
 * --max-connections already; connections already open are not touched.
 */
export function admitConnection(ctx: ProxyContext, socket: net.Socket): boolean {
  if (ctx.stats.connections >= ctx.limits.maxConnections) {
    ctx.stats.tripped('max-connections');
    socket.destroy();
    return false;
  }
  ctx.stats.connections++;
  socket.once('close', () => ctx.stats.connections--);
  return true;
}

/**
 * Holds a place on a route with a connection limit until `holder` closes (an L4
 * connection, an L7 response or upgraded socket); false when the route is full.
 */
export function admitToRoute(ctx: ProxyContext, route: Route, holder: EventEmitter): boolean {
  const max = route.spec.maxConnections;
  if (max === undefined) return true;
  if (route.held >= max) {
    ctx.stats.tripped('route-max-connections');
    return false;
  }
  route.held++;
  holder.once('close', () => route.held--);
  return true;
}

/** L4 and upgraded connections: closed after this long with no byte either way. */
export function tcpIdleTimeout(ctx: ProxyContext, route: Route): number {
  return route.spec.idleTimeout ?? ctx.limits.tcpIdleTimeout;
}
