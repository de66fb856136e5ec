// PROXY protocol v2 header (haproxy.org/download/2.9/doc/proxy-protocol.txt §2.2):
// tells an L4 backend the client's real address.
import net from 'node:net';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function ipv4(addr: string): number[] {
  return addr.split('.').map(Number);
}

function ipv6(addr: string): number[] {
  const [head = '', tail = ''] = addr.split('::');
  const parts = (s: string) => (s ? s.split(':') : []);
  const h = parts(head), t = parts(tail);
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

/** Header for a proxied TCP connection from `src` to `dst`; LOCAL when the addresses are unknown. */
export function proxyV2Header(src: { address?: string | undefined; port?: number | undefined }, dst: { address?: string | undefined; port?: number | undefined }): Buffer {
  let s = src.address ?? '', d = dst.address ?? '';
  // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
  if (s.startsWith('::ffff:') && net.isIPv4(s.slice(7))) s = s.slice(7);
  if (d.startsWith('::ffff:') && net.isIPv4(d.slice(7))) d = d.slice(7);
  const v4 = net.isIPv4(s) && net.isIPv4(d);
  const v6 = net.isIPv6(s) && net.isIPv6(d);
  if (!v4 && !v6) return Buffer.concat([SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const addrs = v4 ? [...ipv4(s), ...ipv4(d)] : [...ipv6(s), ...ipv6(d)];
  const body = Buffer.alloc(addrs.length + 4);
  Buffer.from(addrs).copy(body);
  body.writeUInt16BE(src.port ?? 0, addrs.length);
  body.writeUInt16BE(dst.port ?? 0, addrs.length + 2);
  const head = Buffer.from([0x21, v4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIGNATURE, head, body]);
}
