// `meshd status`: a running meshd's table in the terminal, read from its admin
// API. Exit code 1 when a route has no healthy backend, so scripts can gate on
// it; 2 when the admin API cannot be read.
import fs from 'node:fs';
import { request } from 'undici';

interface BackendView {
  address: string;
  node: string | null;
  state: string;
  health: { active: string; ejected: boolean; failed: boolean; lastProbeError: string | null };
  active: number;
  requests: number;
  failures: number;
}

interface RouteView {
  name: string;
  port: number;
  mode: string;
  hosts: string[];
  paths?: string[];
  lb?: string;
  listening: boolean;
  listenError?: string;
  problems: string[];
  eligible: number;
  backends: BackendView[];
}

export interface RoutesView {
  version: number;
  loaded: boolean;
  discoveryError?: string;
  routes: RouteView[];
  notices: { service: string; port?: number; message: string }[];
}

interface StatusOptions {
  adminAddr: string;
  tokenFile: string | undefined;
  watch: boolean;
  json: boolean;
  interval: number;
  /** Routes read per request to the admin API. */
  pageSize: number;
}

const USAGE = `Usage: meshd status [--admin-addr HOST:PORT] [--admin-token-file FILE] [--watch] [--json] [--page-size N]

Prints the routing table of the meshd whose admin API listens at --admin-addr
(default $MESHD_ADMIN_ADDR or 127.0.0.1:9900): ports, routes, backends with
node, state and health, problems. --watch redraws it when it changes; --json
prints the admin API's answer as it is. Exits 1 when a route has no healthy
backend, 2 when the admin API cannot be read. The table is read --page-size
routes at a time (default 1000).
`;

class UsageError extends Error {}

function parseArgs(argv: string[], env: NodeJS.ProcessEnv): StatusOptions | 'help' {
  const o: StatusOptions = { adminAddr: env.MESHD_ADMIN_ADDR ?? '127.0.0.1:9900', tokenFile: env.MESHD_ADMIN_TOKEN_FILE, watch: false, json: false, interval: 1000, pageSize: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag}: needs a value`);
      return v;
    };
    switch (flag) {
      case '--help': case '-h': return 'help';
      case '--watch': o.watch = true; break;
      case '--json': o.json = true; break;
      case '--admin-addr': o.adminAddr = value(); break;
      case '--admin-token-file': o.tokenFile = value(); break;
      case '--page-size': {
        const v = value();
        if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 10_000) throw new UsageError(`--page-size: must be a whole number from 1 to 10000 (got ${JSON.stringify(v)})`);
        o.pageSize = Number(v);
        break;
      }
      default: throw new UsageError(`unknown argument ${JSON.stringify(argv[i])} (see meshd status --help)`);
    }
  }
  if (!/^(\[[^\]]+\]|[^:]+):\d+$/.test(o.adminAddr)) throw new UsageError(`--admin-addr: must be HOST:PORT (got ${JSON.stringify(o.adminAddr)})`);
  return o;
}

/** The whole table, page by page (/api/routes answers a page of routes and the offset of the next). */
async function fetchRoutes(o: StatusOptions): Promise<{ text: string; view: RoutesView }> {
  const headers: Record<string, string> = {};
  if (o.tokenFile) headers.authorization = `Bearer ${fs.readFileSync(o.tokenFile, 'utf8').trim()}`;
  let view: RoutesView | undefined;
  let text = '';
  let pages = 0;
  let restarts = 0;
  for (let offset: number | null = 0; offset !== null;) {
    const res = await request(`http://${o.adminAddr}/api/routes?offset=${offset}&limit=${o.pageSize}`, { headers, headersTimeout: 5000, bodyTimeout: 5000 });
    text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`admin API answered ${res.statusCode}: ${text.trim().slice(0, 200)}`);
    const page = JSON.parse(text) as RoutesView & { next?: number | null };
    // A table that changed between pages is read again from the start (a few times; then the pages stand).
    if (view && page.version !== view.version && restarts++ < 3) {
      view = undefined;
      pages = 0;
      offset = 0;
      continue;
    }
    pages++;
    view = view ? { ...page, routes: [...view.routes, ...page.routes] } : page;
    offset = typeof page.next === 'number' && page.next > offset ? page.next : null;
  }
  return { text: pages === 1 ? text : `${JSON.stringify(view)}\n`, view: view! };
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
}

function healthOf(b: BackendView): string {
  const parts = [`probe ${b.health.active}`];
  if (b.health.ejected) parts.push('ejected');
  if (b.health.failed) parts.push('task failed');
  if (b.health.lastProbeError && b.health.active !== 'up') parts.push(b.health.lastProbeError);
  return parts.join(', ');
}

/** The table as text, one block per route. */
export function render(view: RoutesView): string {
  const out: string[] = [`table version ${view.version}${view.loaded ? '' : ' (no table loaded yet)'}`];
  if (view.discoveryError) out.push(`discovery error: ${view.discoveryError}`);
  const routes = [...view.routes].sort((a, b) => a.port - b.port || a.name.localeCompare(b.name));
  for (const r of routes) {
    const hosts = (r.hosts.length ? ` hosts ${r.hosts.join(',')}` : '') + (r.paths ? ` paths ${r.paths.join(',')}` : '') + (r.lb && r.lb !== 'round-robin' ? ` lb ${r.lb}` : '');
    const listening = r.listening ? '' : ` NOT LISTENING${r.listenError ? `: ${r.listenError}` : ''}`;
    out.push('', `${r.port}/${r.mode}  ${r.name}${hosts}  ${r.eligible}/${r.backends.length} backends healthy${listening}`);
    if (r.backends.length) {
      out.push(...table([
        ['  BACKEND', 'NODE', 'STATE', 'HEALTH', 'ACTIVE', 'REQUESTS', 'FAILURES'],
        ...r.backends.map((b) => [`  ${b.address}`, b.node ?? '-', b.state, healthOf(b), String(b.active), String(b.requests), String(b.failures)]),
      ]));
    }
    for (const p of r.problems) out.push(`  problem: ${p}`);
  }
  if (view.notices.length) out.push('', 'notices:', ...view.notices.map((n) => `  ${n.service}${n.port ? ` (${n.port})` : ''}: ${n.message}`));
  return out.join('\n') + '\n';
}

/** 1 when any route has no backend taking work. */
export function exitCodeOf(view: RoutesView): number {
  return view.routes.some((r) => r.eligible === 0) ? 1 : 0;
}

export async function runStatus(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let o: StatusOptions | 'help';
  try {
    o = parseArgs(argv, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`meshd status: ${err.message}\n`);
    return 2;
  }
  if (o === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const once = async (): Promise<{ code: number; text: string }> => {
    try {
      const { text, view } = await fetchRoutes(o);
      return { code: exitCodeOf(view), text: o.json ? text.trimEnd() + '\n' : render(view) };
    } catch (err) {
      return { code: 2, text: `meshd status: cannot read http://${o.adminAddr}/api/routes: ${(err as Error).message}\n` };
    }
  };
  if (!o.watch) {
    const { code, text } = await once();
    (code === 2 ? process.stderr : process.stdout).write(text);
    return code;
  }
  // --watch: redraw only when the answer changes; Ctrl-C ends it.
  let last = '';
  for (;;) {
    const { text } = await once();
    if (text !== last) {
      process.stdout.write(`\x1b[H\x1b[2J${new Date().toISOString()}  ${o.adminAddr}\n${text}`);
      last = text;
    }
    await new Promise((r) => setTimeout(r, o.interval));
  }
}
