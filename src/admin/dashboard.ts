// The dashboard: one page at `/` that follows the live table over Server-Sent
// Events (`/api/events`). Everything it needs ships with meshd; nothing is
// fetched from elsewhere. With --admin-token-file, a browser signs in once with
// the token (POST /login) and gets an HttpOnly, SameSite=Strict session cookie,
// which EventSource sends, since it cannot send an Authorization header.
import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import { bearerMatches, secretMatches } from '../core/token.js';
import type { ListenerState } from '../proxy/listeners.js';
import type { Table } from '../table/table.js';
import { EventFeed } from './events.js';
import { buildView, RateWindow, type InstanceView } from './live-view.js';
import type { Metrics } from './metrics.js';
import { APP_CSS, FAVICON_SVG, dashboardPage, loginPage } from './ui/page.js';

export interface DashboardDeps {
  table: Table;
  listeners: ListenerState;
  metrics: Metrics;
  version: () => number;
  refresh?: (() => Promise<void>) | undefined;
  discoveryError: () => string | undefined;
  instance?: (() => InstanceView) | undefined;
  token?: string | undefined;
  /** A sign-in with a wrong token, counted with the admin API's other refusals. */
  onRefused: () => void;
}

/** Paths the token guard lets through: the page decides itself between the dashboard and the sign-in form; assets hold no data. */
export const DASHBOARD_OPEN_PATHS = new Set(['/', '/login', '/logout', '/ui/app.js', '/ui/app.css', '/favicon.ico']);

const COOKIE = 'meshd_session';

/** The cookie's value: derived from the token, so the cookie is not the bearer token itself, and changes with it. */
function sessionValue(token: string): string {
  return createHmac('sha256', token).update('meshd dashboard session').digest('base64url');
}

export function sessionMatches(cookieHeader: string | undefined, token: string): boolean {
  for (const part of (cookieHeader ?? '').split(';')) {
    const [name, value] = part.trim().split(/=(.*)/s, 2);
    if (name === COOKIE && value !== undefined && secretMatches(value, sessionValue(token))) return true;
  }
  return false;
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** The compiled browser script, with its source map reference dropped (the map is not served). */
async function appScript(): Promise<string> {
  const js = await readFile(new URL('./ui/app.js', import.meta.url), 'utf8');
  return js.replace(/^\/\/# sourceMappingURL=.*$/m, '');
}

export async function registerDashboard(app: FastifyInstance, deps: DashboardDeps): Promise<void> {
  const { table, token } = deps;
  const script = await appScript();
  const rates = new RateWindow();
  const snapshots = new Counter({ name: 'meshd_dashboard_snapshots_total', help: 'Dashboard snapshots built (one per tick or change, shared by every open page).', registers: [deps.metrics.registry] });
  const feed = new EventFeed({
    view: () => {
      snapshots.inc();
      return JSON.stringify(buildView({ table, version: deps.version(), listeners: deps.listeners, rates, discoveryError: deps.discoveryError, instance: deps.instance, auth: token !== undefined }));
    },
    // With workers, their counters arrive for the next tick: a second behind, as the rates are anyway.
    sample: () => {
      void deps.refresh?.();
      rates.sample(table, Date.now());
    },
    idle: () => rates.clear(),
  });
  new Gauge({
    name: 'meshd_dashboard_streams', help: 'Open dashboard event streams.', registers: [deps.metrics.registry],
    collect() {
      this.set(feed.clients);
    },
  });
  const changed = () => feed.changed();
  table.on('applied', changed);
  table.on('health', changed);
  // Open streams would hold the server's close forever.
  app.addHook('preClose', async () => {
    table.off('applied', changed);
    table.off('health', changed);
    feed.close();
  });

  const signedIn = (req: FastifyRequest) => token === undefined || bearerMatches(req.headers.authorization, token) || sessionMatches(req.headers.cookie, token);
  const html = (reply: FastifyReply, code: number, body: string) => reply.code(code).headers(SECURITY_HEADERS).type('text/html; charset=utf-8').send(body);
  const hostname = os.hostname();

  // The sign-in form is a page like any other (200): it holds no data, and a browser logs a 401 as an error.
  app.get('/', async (req, reply) => html(reply, 200, signedIn(req) ? dashboardPage(hostname) : loginPage(hostname)));
  app.get('/ui/app.js', async (_req, reply) => reply.headers(SECURITY_HEADERS).type('text/javascript; charset=utf-8').send(script));
  app.get('/ui/app.css', async (_req, reply) => reply.headers(SECURITY_HEADERS).type('text/css; charset=utf-8').send(APP_CSS));
  app.get('/favicon.ico', async (_req, reply) => reply.headers(SECURITY_HEADERS).type('image/svg+xml').send(FAVICON_SVG));
  app.get('/api/events', { exposeHeadRoute: false }, async (req, reply) => {
    // The first snapshot of a stream then shows the workers' counters of now, not of the last tick.
    await deps.refresh?.();
    reply.hijack();
    feed.add(reply.raw);
    // Nothing is read from the client; its end is the stream's end.
    req.raw.resume();
  });

  await app.register(async (forms) => {
    forms.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    forms.post('/login', async (req, reply) => {
      if (token === undefined) return reply.redirect('/', 303);
      const given = (req.body as Record<string, string> | undefined)?.token?.trim() ?? '';
      if (!secretMatches(given, token)) {
        deps.onRefused();
        req.log.warn({ remote: req.ip }, 'dashboard sign-in with a wrong token');
        return html(reply, 401, loginPage(hostname, 'That token is not the one in --admin-token-file.'));
      }
      // A session cookie: it ends with the browser session; the admin API is plain HTTP, so no Secure flag.
      return reply.header('set-cookie', `${COOKIE}=${sessionValue(token)}; Path=/; HttpOnly; SameSite=Strict`).redirect('/', 303);
    });
    forms.post('/logout', async (_req, reply) => {
      return reply.header('set-cookie', `${COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`).redirect('/', 303);
    });
  });
}
