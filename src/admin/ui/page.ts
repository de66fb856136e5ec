// The dashboard's HTML, stylesheet and icon, shipped inside meshd as strings:
// no build step for users, no file to find at run time, nothing from a CDN.
// The script is ./app.ts, compiled by the same tsc run.

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function shell(title: string, body: string, script: boolean): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<link rel="stylesheet" href="/ui/app.css">
${script ? '<script type="module" src="/ui/app.js"></script>\n' : ''}</head>
<body>
${body}
</body>
</html>
`;
}

/** Three nodes meshed: the icon, and the mark in the header. */
const MARK = `<rect width="32" height="32" rx="7" fill="#1f6feb"/>
<path d="M9 9 L23 9 L16 22 Z" stroke="#fff" stroke-width="2" fill="none" stroke-linejoin="round"/>
<circle cx="9" cy="9" r="3.2" fill="#fff"/><circle cx="23" cy="9" r="3.2" fill="#fff"/><circle cx="16" cy="22" r="3.2" fill="#fff"/>`;

const BRAND = `<span class="brand"><svg viewBox="0 0 32 32" aria-hidden="true">${MARK}</svg>meshd</span>`;

export function dashboardPage(hostname: string): string {
  return shell(`meshd · ${hostname}`, `<header class="bar">${BRAND}<span class="bar-host">${esc(hostname)}</span><div id="bar-status" class="bar-status"></div></header>
<div id="alerts"></div>
<div id="summary" class="summary"></div>
<main id="routes"><p class="empty">Connecting to meshd…</p></main>
<section id="notices"></section>`, true);
}

export function loginPage(hostname: string, error?: string): string {
  return shell(`meshd · sign in`, `<header class="bar">${BRAND}<span class="bar-host">${esc(hostname)}</span></header>
<main class="login">
<form method="post" action="/login" class="login-box">
<h1>Sign in</h1>
<p>This admin API asks for the token in meshd's <code>--admin-token-file</code>.</p>
${error ? `<p class="login-error" role="alert">${esc(error)}</p>\n` : ''}<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
<p class="hint">The browser keeps a session cookie (HttpOnly, SameSite=Strict) until it closes.</p>
</form>
</main>`, false);
}

export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">${MARK}</svg>\n`;

export const APP_CSS = `:root {
  --bg: #f4f6f8; --panel: #fff; --line: #d8dee4; --line-soft: #eaeef2;
  --text: #1f2328; --muted: #59636e; --faint: #818b98;
  --active: #1a7f37; --active-bg: #dafbe1;
  --pending: #0969da; --pending-bg: #ddf4ff;
  --draining: #9a6700; --draining-bg: #fff8c5;
  --out: #cf222e; --out-bg: #ffebe9;
  --bar: #1b1f24;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--text); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
.num { font-variant-numeric: tabular-nums; }

.bar { display: flex; align-items: center; gap: 14px; flex-wrap: wrap; padding: 10px 24px; background: var(--bar); color: #e6edf3; }
.brand { display: inline-flex; align-items: center; gap: 8px; font-weight: 650; font-size: 16px; letter-spacing: .2px; }
.brand svg { width: 22px; height: 22px; }
.bar-host { color: #9198a1; font-family: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, monospace; font-size: 13px; }
.bar-status { flex: 1; display: flex; align-items: center; gap: 14px; flex-wrap: wrap; }
.bar-facts { display: flex; gap: 8px; flex-wrap: wrap; }
.fact { padding: 2px 9px; border-radius: 999px; background: #2d333b; color: #d1d9e0; font-size: 12.5px; white-space: nowrap; }
.fact b { color: #fff; font-weight: 600; }
.fact.bad { background: #5c1d22; color: #ffd8d3; }
.bar-right { margin-left: auto; display: flex; align-items: center; gap: 14px; font-size: 12.5px; color: #9198a1; }
.conn { display: inline-flex; align-items: center; gap: 6px; color: #d1d9e0; }
.conn::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: #8c959f; }
.conn.live::before { background: #3fb950; box-shadow: 0 0 0 3px rgba(63,185,80,.25); }
.conn.down::before { background: #f85149; }
.bar form { margin: 0; }
.bar button { font: inherit; color: #d1d9e0; background: transparent; border: 1px solid #444c56; border-radius: 6px; padding: 2px 10px; cursor: pointer; }
.bar button:hover { border-color: #768390; color: #fff; }

#alerts:empty { display: none; }
.alert { margin: 16px 24px 0; padding: 10px 14px; border: 1px solid #ffcecb; border-left: 4px solid var(--out); border-radius: 6px; background: var(--out-bg); }
.alert b { color: var(--out); }

.summary { display: flex; gap: 40px; flex-wrap: wrap; padding: 16px 24px 6px; }
.summary:empty { display: none; }
.stat span { display: block; font-size: 11.5px; font-weight: 600; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); }
.stat b { display: block; font-size: 22px; font-weight: 600; line-height: 1.3; font-variant-numeric: tabular-nums; }
.stat b small { font-size: 15px; font-weight: 500; color: var(--muted); }
.stat em { display: block; min-height: 18px; font-style: normal; font-size: 12.5px; color: var(--muted); }
.stat i, .t-out, .t-pending, .t-draining { font-style: normal; font-weight: 500; }
.t-out { color: var(--out); } .t-pending { color: var(--pending); } .t-draining { color: var(--draining); }
.pill { font-size: 11px; font-weight: 700; letter-spacing: .4px; text-transform: uppercase; padding: 1px 8px; border-radius: 999px; }
.p-degraded { color: var(--draining); background: var(--draining-bg); }
.p-down { color: var(--out); background: var(--out-bg); }

main { padding: 8px 24px 12px; }
.empty { color: var(--muted); padding: 32px 0; }
.hidden-note { color: var(--muted); margin: 8px 0 16px; }
.port { margin: 16px 0 22px; }
.port-head { display: flex; align-items: baseline; gap: 10px; margin: 0 0 8px; font-size: 15px; font-weight: 600; }
.port-num { font-family: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, monospace; font-size: 15px; }
.mode { font-size: 11px; font-weight: 700; letter-spacing: .6px; padding: 1px 7px; border-radius: 4px; background: #e7ecf0; color: #424a53; }
.listen-error { color: var(--out); font-weight: 500; font-size: 13px; }

.route { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; margin-bottom: 12px; }
.route.down { border-color: #ffcecb; box-shadow: inset 4px 0 0 var(--out); }
.route-head { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; padding: 12px 16px 4px; }
.route-head h3 { margin: 0; font-size: 15px; font-weight: 650; }
.hosts { display: inline-flex; gap: 6px; flex-wrap: wrap; }
.host { font-family: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; padding: 1px 7px; border-radius: 4px; background: #f0f3f6; border: 1px solid var(--line-soft); color: #424a53; }
.host.any { font-family: inherit; color: var(--muted); }
.host.path { background: #fff; border-style: dashed; }
.route-stats { margin-left: auto; display: flex; gap: 18px; color: var(--muted); font-size: 13px; }
.route-stats b { color: var(--text); font-weight: 600; font-variant-numeric: tabular-nums; }
.route-stats .zero b { color: var(--out); }
.route-meta { padding: 0 16px 8px; color: var(--faint); font-size: 12.5px; }
.problems { margin: 0 16px 10px; padding: 8px 12px; list-style: none; border-radius: 6px; background: var(--draining-bg); border: 1px solid #eac54f; color: #4d2d00; font-size: 13px; }
.problems li + li { margin-top: 4px; }
.problems li::before { content: "Problem: "; font-weight: 600; }

.grid { display: flex; gap: 12px; overflow-x: auto; padding: 4px 16px 16px; }
.node { flex: 0 0 240px; background: #f6f8fa; border: 1px solid var(--line-soft); border-radius: 6px; padding: 8px; }
.node-head { display: flex; justify-content: space-between; padding: 0 2px 6px; font-size: 12.5px; font-weight: 600; color: #424a53; }
.node-head.none { color: var(--faint); font-weight: 500; font-style: italic; }
.node-head span { color: var(--faint); font-weight: 400; font-style: normal; }

.card { background: var(--panel); border: 1px solid var(--line); border-left: 4px solid var(--faint); border-radius: 6px; padding: 8px 10px; margin-top: 8px; transition: border-color .3s, background-color .3s; }
.node-head + .card { margin-top: 0; }
.card.s-active { border-left-color: var(--active); }
.card.s-pending { border-left-color: var(--pending); }
.card.s-draining { border-left-color: var(--draining); background: #fffdf0; }
.card.s-out { border-left-color: var(--out); background: #fff8f7; }
.card-top { display: flex; align-items: center; justify-content: space-between; gap: 8px; }
.addr { font-family: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.badge { flex: none; font-size: 11px; font-weight: 700; letter-spacing: .4px; text-transform: uppercase; padding: 1px 7px; border-radius: 999px; }
.s-active .badge { color: var(--active); background: var(--active-bg); }
.s-pending .badge { color: var(--pending); background: var(--pending-bg); }
.s-draining .badge { color: var(--draining); background: var(--draining-bg); }
.s-out .badge { color: var(--out); background: var(--out-bg); }
.card-health { margin-top: 4px; font-size: 12.5px; color: var(--muted); }
.card-health .bad { color: var(--out); }
.card-health .warn { color: var(--draining); }
.card-stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: 4px; margin: 6px 0 0; }
.card-stats div { min-width: 0; }
.card-stats dt { font-size: 10.5px; text-transform: uppercase; letter-spacing: .4px; color: var(--faint); }
.card-stats dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
.card-stats dd.err { color: var(--out); }
.card-id { margin-top: 4px; font-size: 11.5px; color: var(--faint); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }

#notices { padding: 0 24px 28px; }
#notices:empty { display: none; }
#notices h2 { font-size: 15px; margin: 8px 0; }
.notice-list { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; margin: 0; padding: 0; list-style: none; }
.notice-list li { padding: 9px 14px; border-top: 1px solid var(--line-soft); }
.notice-list li:first-child { border-top: 0; }
.notice-list .svc { font-weight: 600; margin-right: 6px; }

.login { display: flex; justify-content: center; padding: 64px 16px; }
.login-box { width: 100%; max-width: 380px; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 24px; }
.login-box h1 { margin: 0 0 8px; font-size: 20px; }
.login-box p { color: var(--muted); margin: 0 0 14px; }
.login-box code { white-space: nowrap; }
.login-box label { display: block; font-weight: 600; margin-bottom: 6px; }
.login-box input { width: 100%; font: inherit; padding: 7px 10px; border: 1px solid var(--line); border-radius: 6px; }
.login-box input:focus { outline: 2px solid #0969da; outline-offset: -1px; }
.login-box button { margin-top: 14px; width: 100%; font: inherit; font-weight: 600; color: #fff; background: #1f883d; border: 1px solid rgba(31,35,40,.15); border-radius: 6px; padding: 7px; cursor: pointer; }
.login-box .hint { margin: 14px 0 0; font-size: 12.5px; }
.login-error { color: var(--out) !important; font-weight: 500; }
`;
