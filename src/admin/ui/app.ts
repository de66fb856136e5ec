// The dashboard in the browser: follows /api/events and redraws what changed.
// Compiled by meshd's own tsc run and served as /ui/app.js; no libraries.
import type { BackendView, DashboardView, RouteView, SnapshotEvent } from '../live-view.js';

/** Reconnect a stream that has carried nothing, not even a ping, for this long. */
const STALE_MS = 40_000;

const byId = (id: string) => document.getElementById(id)!;
// Names come from service labels and routes files: never trust them as markup.
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function rate(n: number | null): string {
  if (n === null) return '–';
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

function duration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const clock = (t: number) => new Date(t).toLocaleTimeString('en-GB');

let view: DashboardView | undefined;
let updated = 0;
let connection: 'connecting' | 'live' | 'down' = 'connecting';
let lastMessage = Date.now();
/** What each region last rendered, so unchanged ones are left alone (and keep text selection). */
const drawn = new Map<string, string>();

function draw(el: HTMLElement, html: string): void {
  if (drawn.get(el.id || el.dataset.key!) === html) return;
  drawn.set(el.id || el.dataset.key!, html);
  el.innerHTML = html;
}

function roleText(v: DashboardView): string {
  const i = v.instance;
  if (!i) return '';
  if (i.provider === 'file') return 'routes file';
  if (i.role === 'worker') return i.following ? `worker · following <b>${esc(i.following)}</b>` : 'worker · <b>no manager reachable</b>';
  return `swarm <b>${esc(i.role)}</b>`;
}

function drawBar(): void {
  const v = view;
  const facts: string[] = [];
  if (v) {
    facts.push(v.loaded ? `<span class="fact">table <b>v${v.version}</b></span>` : '<span class="fact bad">no table loaded</span>');
    const role = roleText(v);
    if (role) facts.push(`<span class="fact">${role}</span>`);
    if (v.discoveryError) facts.push('<span class="fact bad">discovery failing</span>');
  }
  const conn = { connecting: 'connecting…', live: 'live', down: 'reconnecting…' }[connection];
  draw(byId('bar-status'), `<span class="bar-facts">${facts.join('')}</span>
<span class="bar-right"><span class="conn ${connection}">${conn}</span>${updated ? `<span>updated <span class="num">${clock(updated)}</span></span>` : ''}
${v?.auth ? '<form method="post" action="/logout"><button type="submit">Sign out</button></form>' : ''}</span>`);
}

function drawAlerts(v: DashboardView): void {
  const alerts: string[] = [];
  if (v.discoveryError) {
    alerts.push(`<div class="alert"><b>Discovery error:</b> ${esc(v.discoveryError)} — ${v.loaded ? 'serving the last good table' : 'no table yet, nothing is served'}.</div>`);
  }
  for (const r of v.routes) {
    if (r.listenError) alerts.push(`<div class="alert"><b>Port ${r.port} is not served:</b> ${esc(r.listenError)}</div>`);
  }
  draw(byId('alerts'), [...new Set(alerts)].join(''));
}

function drawSummary(v: DashboardView): void {
  const all = v.routes.flatMap((r) => r.backends);
  const count = (s: BackendView['state']) => all.filter((b) => b.state === s).length;
  const total = (pick: (r: RouteView) => number | null) => {
    const known = v.routes.map(pick).filter((n): n is number => n !== null);
    return known.length ? known.reduce((a, b) => a + b, 0) : null;
  };
  const t = v.totals;
  const down = t.routesDown;
  // In a summarised view the counts by state cover the routes shown; the totals cover all.
  const others = t.hiddenRoutes ? [] : (['pending', 'draining', 'out'] as const).filter((st) => count(st)).map((st) => `<i class="t-${st}">${count(st)} ${st}</i>`);
  const stats = [
    ['Routes', `${t.routes}`, down ? `<i class="t-out">${down} with no active backend</i>` : ''],
    ['Backends active', `${t.activeBackends}<small> / ${t.backends}</small>`, others.join(' · ')],
    ['In flight', `${all.reduce((n, b) => n + b.active, 0)}`, ''],
    [`Requests/s · last ${duration(v.rateWindow)}`, rate(total((r) => r.rate)), ''],
    ['Errors/s', rate(total((r) => r.errorRate)), ''],
  ];
  draw(byId('summary'), stats.map(([label, value, detail]) => `<div class="stat"><span>${label}</span><b>${value}</b><em>${detail}</em></div>`).join(''));
}

function healthText(b: BackendView): string {
  const parts: string[] = [];
  if (b.probe === 'up') parts.push('probe up');
  // A task that was already shutting down when first seen is never probed.
  else if (b.probe === 'pending') parts.push(b.lastProbeError ? '<span class="bad">first probe failed</span>' : b.state === 'draining' ? '' : 'awaiting first probe');
  else parts.push('<span class="bad">probe down</span>');
  if (b.ejected) parts.push('<span class="bad">ejected after errors</span>');
  if (b.failed) parts.push('<span class="bad">task failed</span>');
  if (b.state === 'draining') parts.push('<span class="warn">task shutting down</span>');
  if (b.lastProbeError && b.probe !== 'up') parts.push(`<span class="bad mono">${esc(b.lastProbeError)}</span>`);
  return parts.filter(Boolean).join(' · ');
}

function card(b: BackendView): string {
  const errorPct = b.rate && b.errorRate ? ` title="${Math.round((100 * b.errorRate) / b.rate)}% of requests"` : '';
  return `<div class="card s-${b.state}" data-backend="${esc(b.address)}" data-state="${b.state}">
<div class="card-top"><span class="addr" title="${esc(b.address)}">${esc(b.address)}</span><span class="badge">${b.state}</span></div>
<div class="card-health">${healthText(b)}</div>
<dl class="card-stats"><div><dt>in flight</dt><dd>${b.active}</dd></div><div><dt>req/s</dt><dd>${rate(b.rate)}</dd></div><div><dt>err/s</dt><dd${b.errorRate ? ` class="err"${errorPct}` : ''}>${rate(b.errorRate)}</dd></div></dl>
<div class="card-id" title="${b.requests} requests, ${b.failures} failures since meshd started">${b.id !== b.address ? `task <span class="mono">${esc(b.id.slice(0, 12))}</span> · ` : ''}${b.requests} total · ${b.failures} failed</div>
</div>`;
}

/** One column per node, in name order; backends with no known node last. */
function grid(r: RouteView): string {
  if (r.backends.length === 0) return '<div class="grid"><p class="empty">No backends: no running task.</p></div>';
  const nodes = new Map<string | null, BackendView[]>();
  for (const b of [...r.backends].sort((x, y) => x.address.localeCompare(y.address, 'en', { numeric: true }))) {
    nodes.set(b.node, [...(nodes.get(b.node) ?? []), b]);
  }
  const names = [...nodes.keys()].sort((a, b) => (a === null ? 1 : b === null ? -1 : a.localeCompare(b, 'en', { numeric: true })));
  return `<div class="grid">${names.map((n) => `<div class="node">
<div class="node-head${n === null ? ' none' : ''}">${n === null ? 'no node' : esc(n)}<span>${nodes.get(n)!.length}</span></div>
${nodes.get(n)!.map(card).join('')}</div>`).join('')}</div>`;
}

function route(r: RouteView): string {
  const hosts = r.mode !== 'tcp'
    ? `<span class="hosts">${r.hosts.length ? r.hosts.map((h) => `<span class="host">${esc(h)}</span>`).join('') : '<span class="host any">any host</span>'}${r.paths.map((p) => `<span class="host path">${esc(p)}</span>`).join('')}</span>`
    : '';
  const h = r.health;
  const meta = [
    `probe ${esc(r.check)} every ${duration(h.interval)}, timeout ${duration(h.timeout)}, rise ${h.rise}, fall ${h.fall}`,
    r.lb !== 'round-robin' ? esc(r.lb) : '',
    r.sticky ? `sticky cookie ${esc(r.sticky)}` : '',
    r.stripPrefix ? 'prefix stripped' : '',
    r.from.length ? `from ${r.from.map(esc).join(', ')}` : '',
    r.proxyProtocol ? 'PROXY protocol v2' : '',
    r.maxConnections !== null ? `at most ${r.maxConnections} ${r.mode !== 'tcp' ? 'requests' : 'connections'} at once` : '',
  ].filter(Boolean).join(' · ');
  const problems = r.problems.length ? `<ul class="problems">${r.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>` : '';
  const status = r.eligible === 0 ? '<span class="pill p-down">no active backend</span>'
    : r.backends.some((b) => b.state === 'out') ? '<span class="pill p-degraded">degraded</span>' : '';
  return `<article class="route${r.eligible === 0 ? ' down' : ''}" data-route="${esc(r.key)}">
<div class="route-head"><h3>${esc(r.name)}</h3>${status}${hosts}
<div class="route-stats"><span class="${r.eligible === 0 ? 'zero' : ''}"><b>${r.eligible}/${r.backends.length}</b> active</span><span><b>${rate(r.rate)}</b> req/s</span><span><b>${rate(r.errorRate)}</b> err/s</span><span><b>${r.active}</b> in flight</span></div></div>
<div class="route-meta">${meta}</div>
${problems}${grid(r)}</article>`;
}

function drawRoutes(v: DashboardView): void {
  const main = byId('routes');
  if (!v.loaded || v.routes.length === 0) {
    drawn.clear();
    const none = v.instance?.provider === 'file' ? 'No routes: the routes file lists none.' : 'No routes: no service asks for a port (service label <code>meshd.publish</code>).';
    main.innerHTML = `<p class="empty">${v.loaded ? none : 'Waiting for the first routing table…'}</p>`;
    return;
  }
  const ports = new Map<number, RouteView[]>();
  for (const r of v.routes) ports.set(r.port, [...(ports.get(r.port) ?? []), r]);
  const sections: HTMLElement[] = [];
  for (const [port, routes] of ports) {
    const key = `port-${port}`;
    let el = main.querySelector<HTMLElement>(`section[data-key="${key}"]`);
    if (!el) {
      el = document.createElement('section');
      el.className = 'port';
      el.dataset.key = key;
    }
    const listening = routes.every((r) => r.listening) ? '' : '<span class="listen-error">not listening</span>';
    draw(el, `<h2 class="port-head"><span class="port-num">:${port}</span><span class="mode">${routes[0]!.mode.toUpperCase()}</span>${listening}</h2>${routes.map(route).join('')}`);
    sections.push(el);
  }
  if (v.totals.hiddenRoutes) {
    let note = main.querySelector<HTMLElement>('p.hidden-note');
    if (!note) {
      note = document.createElement('p');
      note.className = 'hidden-note';
    }
    note.textContent = `Showing ${v.routes.length} of ${v.totals.routes} routes: those that need attention first, then the others, up to a page's worth of backends. /api/routes?limit=&offset= lists them all.`;
    sections.unshift(note);
  }
  // Keep the existing elements, in port order; drop ports that left the table.
  main.replaceChildren(...sections);
  for (const key of [...drawn.keys()]) if (key.startsWith('port-') && !sections.some((s) => s.dataset.key === key)) drawn.delete(key);
}

function drawNotices(v: DashboardView): void {
  const more = v.totals.hiddenNotices ? `<li>and ${v.totals.hiddenNotices} more (/api/routes lists them all)</li>` : '';
  draw(byId('notices'), v.notices.length
    ? `<h2>Notices</h2><ul class="notice-list">${v.notices.map((n) => `<li><span class="svc">${esc(n.service)}${n.port !== null ? ` <span class="mono">:${n.port}</span>` : ''}</span>${esc(n.message)}</li>`).join('')}${more}</ul>`
    : '');
}

function render(): void {
  drawBar();
  if (!view) return;
  drawAlerts(view);
  drawSummary(view);
  drawRoutes(view);
  drawNotices(view);
  const out = view.totals.routesDown;
  document.title = `${out ? `(${out} down) ` : ''}meshd · ${view.instance?.hostname ?? ''}`;
}

let stream: EventSource | undefined;

function connect(): void {
  stream?.close();
  const es = new EventSource('/api/events');
  stream = es;
  lastMessage = Date.now();
  es.addEventListener('open', () => {
    connection = 'live';
    drawBar();
  });
  es.addEventListener('snapshot', (e) => {
    const data = JSON.parse((e as MessageEvent<string>).data) as SnapshotEvent;
    lastMessage = Date.now();
    view = data.view;
    updated = data.time;
    connection = 'live';
    render();
  });
  es.addEventListener('ping', () => {
    lastMessage = Date.now();
  });
  es.addEventListener('error', () => {
    connection = 'down';
    drawBar();
    // The browser retries a broken stream by itself; an HTTP error (a session that ended) closes it for good.
    if (es.readyState === EventSource.CLOSED) void recover(es);
  });
}

async function recover(es: EventSource): Promise<void> {
  const res = await fetch('/api/routes', { method: 'HEAD' }).catch(() => undefined);
  if (res?.status === 401) return location.reload();
  setTimeout(() => stream === es && connect(), 3000);
}

setInterval(() => {
  if (Date.now() - lastMessage > STALE_MS) connect();
}, 5000);
connect();
