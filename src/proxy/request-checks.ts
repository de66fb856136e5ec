// What node's HTTP server lets through but a gateway must refuse with 400:
// requests that meshd and a backend could read differently. Node (llhttp,
// strict) already refuses bad framing (Content-Length with Transfer-Encoding,
// two Content-Lengths, a Transfer-Encoding not ending in chunked, bad chunk
// sizes, bare LF, obs-fold, control characters) and an HTTP/1.1 request without
// Host (requireHostHeader); test/integration/desync.test.ts checks that. This
// covers the rest: Host, the request target, framing headers spelt with "_".
import type http from 'node:http';

// RFC 9110 §7.2 and RFC 3986 §3.2: uri-host [ ":" port ], uri-host being an
// IP-literal, an IPv4 address or a reg-name (unreserved, pct-encoded, sub-delims).
// So no whitespace, "@" (userinfo), "/", "?", "#" or "\".
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;
// RFC 9112 §3.2.2: absolute-form, as meshd can forward it (http and https only).
const ABSOLUTE = /^https?:\/\/([^/?#]*)/i;

/** Host (or authority) lower-cased, without a port equal to the scheme's default. */
function authority(value: string, https: boolean): string {
  const v = value.toLowerCase();
  const port = https ? ':443' : ':80';
  return v.endsWith(port) ? v.slice(0, -port.length) : v.endsWith(':') ? v.slice(0, -1) : v;
}

/**
 * Returns why `req` must be refused with 400, or undefined when it may go on.
 * RFC 9112 §3.2: at most one Host, a valid one; a target in origin-form,
 * absolute-form naming the same authority as Host, or `*` for OPTIONS.
 */
export function checkRequest(req: Pick<http.IncomingMessage, 'method' | 'url' | 'rawHeaders'>): string | undefined {
  const raw = req.rawHeaders;
  let host: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (host !== undefined) return 'more than one Host header';
      host = raw[i + 1]!;
    } else if ((name.length === 14 || name.length === 17) && name.includes('_')) {
      // CGI-style backends read Transfer_Encoding as Transfer-Encoding; meshd frames by the real one.
      const dashed = name.toLowerCase().replaceAll('_', '-');
      if (dashed === 'content-length' || dashed === 'transfer-encoding') return `${name} header`;
    }
  }
  if (host !== undefined && !HOST.test(host)) return 'invalid Host header';
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 47 /* / */) return undefined;
  if (url === '*') return req.method === 'OPTIONS' ? undefined : 'asterisk-form target for a method other than OPTIONS';
  const m = ABSOLUTE.exec(url);
  if (!m) return 'request target in no form meshd forwards';
  // Meshd routes by Host and the backend, per RFC 9112 §3.2.2, by the target: they must name the same authority.
  const target = m[1]!;
  if (!target || !HOST.test(target)) return 'invalid authority in the request target';
  const https = url.charCodeAt(4) === 115 || url.charCodeAt(4) === 83; // "https" vs "http"
  if (host === undefined || authority(target, https) !== authority(host, https)) return 'request target and Host name different authorities';
  return undefined;
}
