// Sticky sessions by cookie: the cookie holds the backend's stickyId (the same
// on every node), so a client keeps its backend whichever node it enters by.

/** The value of cookie `name` in a Cookie header (`a=1; b=2`), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let at = 0;
  while (at < header.length) {
    let end = header.indexOf(';', at);
    if (end < 0) end = header.length;
    let start = at;
    while (header.charCodeAt(start) === 32) start++;
    if (header.startsWith(name, start) && header.charCodeAt(start + name.length) === 61 /* = */) {
      return header.slice(start + name.length + 1, end).trim();
    }
    at = end + 1;
  }
  return undefined;
}

/** The Set-Cookie that pins a client to a backend: session-long, not readable by scripts, Secure on https. */
export function stickyCookie(name: string, id: string, secure: boolean): string {
  return `${name}=${id}; Path=/; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}
