// A real ACME server: Debian's pebble, with pebble-challtestsrv as its DNS
// server (every name resolves to one IPv4 address, 127.0.0.1 unless told, and
// to no IPv6 address, so the HTTP-01 validator reaches a responder listening on
// IPv4 only). It listens on loopback, or on an address of the swarm lab's bridge.
// Pebble ships no certificate for its own HTTPS API: one is made here with openssl.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { freePort, waitFor } from './net.js';

export interface Pebble {
  directoryUrl: string;
  /** The CA that signed pebble's API certificate (not its issuing root). */
  caFile: string;
  /** Pebble's issuing root, PEM, from its management API (a new one on every launch). */
  root(): Promise<string>;
  /** Output of both processes so far, for failure messages. */
  output(): string;
  /** Kills both processes by pid and removes the folder; safe to call twice. */
  stop(): void;
}

export function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 10_000 });
}

export interface PebbleOptions {
  /** Where pebble's validator fetches HTTP-01 tokens. */
  httpPort: number;
  /** Lifetime of issued certificates. */
  validitySeconds?: number;
  /** The address pebble and its DNS listen on (127.0.0.1). */
  host?: string;
  /** The address every name resolves to, where the validator connects (127.0.0.1). */
  answer?: string;
}

export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const host = options.host ?? '127.0.0.1';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshd-pebble-'));
  const children: ChildProcess[] = [];
  let out = '';
  const stop = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
    children.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };
  // A crashed test process must not leave them running either.
  process.once('exit', stop);
  const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
    const child = spawn(cmd, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const keep = (b: Buffer) => { if (out.length < 200_000) out += b.toString(); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.on('error', (err) => { out += `${cmd}: ${err.message}\n`; });
  };

  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl(dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=meshd test CA']);
    openssl(dir, ['req', ...ec, '-keyout', 'api.key', '-out', 'api.csr', '-subj', '/CN=localhost']);
    writeFileSync(path.join(dir, 'api.ext'), `subjectAltName=DNS:localhost,IP:${host}\n`);
    openssl(dir, ['x509', '-req', '-in', 'api.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'api.ext', '-out', 'api.pem']);

    const [api, management, dns, dnsManagement, tlsPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    writeFileSync(path.join(dir, 'pebble.json'), JSON.stringify({
      pebble: {
        listenAddress: `${host}:${api}`,
        managementListenAddress: `${host}:${management}`,
        certificate: path.join(dir, 'api.pem'),
        privateKey: path.join(dir, 'api.key'),
        httpPort: options.httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.validitySeconds && { certificateValidityPeriod: options.validitySeconds }),
      },
    }));
    run('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dns}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
      '-management', `127.0.0.1:${dnsManagement}`, '-defaultIPv4', options.answer ?? '127.0.0.1', '-defaultIPv6', '']);
    // No random validation delay, no random nonce rejection, every order validated afresh.
    run('pebble', ['-config', 'pebble.json', '-dnsserver', `127.0.0.1:${dns}`], { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' });

    const caFile = path.join(dir, 'ca.pem');
    const ca = readFileSync(caFile, 'utf8');
    const directoryUrl = `https://${host}:${api}/dir`;
    await waitFor(async () => (await httpsGet(directoryUrl, ca)).status === 200 && out.includes('Starting challenge servers'), 15_000, 'pebble and pebble-challtestsrv to answer')
      .catch((err: Error) => { throw new Error(`${err.message}\n${out}`); });
    return {
      directoryUrl,
      caFile,
      async root() {
        const r = await httpsGet(`https://${host}:${management}/roots/0`, ca);
        if (r.status !== 200) throw new Error(`pebble roots/0 answered ${r.status}`);
        return r.body;
      },
      output: () => out,
      stop() {
        process.removeListener('exit', stop);
        stop();
      },
    };
  } catch (err) {
    process.removeListener('exit', stop);
    stop();
    throw err;
  }
}

export interface Served {
  status: number;
  body: string;
  /** The leaf and the chain the server sent, as node verified them against `ca`. */
  leaf: X509Certificate;
  chain: X509Certificate[];
}

/** GET https://HOST/ at address:port, trusting `ca` only: the handshake fails unless the chain leads to it and names `host`. */
export function httpsServed(address: string, port: number, host: string, ca: string): Promise<Served> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: address, port, path: '/', servername: host, ca, agent: false, headers: { host } }, (res) => {
      const socket = res.socket as tls.TLSSocket;
      const chain: X509Certificate[] = [];
      for (let c = socket.getPeerCertificate(true); c?.raw; c = c.issuerCertificate) {
        const x = new X509Certificate(c.raw);
        if (chain.some((y) => y.fingerprint256 === x.fingerprint256)) break;
        chain.push(x);
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, leaf: chain[0]!, chain }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}
