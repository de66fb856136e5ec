// The certificate store: every certificate meshd can serve, with its key, from
// PEM files in --tls-dir, from the routes file's `tls.certificates`, or handed in
// from memory (put). Each certificate's SecureContext is built once, when it is
// loaded; SNI then picks one by exact name, then wildcard, then the default.
//
// A bad certificate (unparsable, key not matching, expired) is a reported problem,
// never a crash, and whatever served its source before keeps serving. Private
// keys stay in memory: no log line, metric or view carries them.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { Logger } from '../core/log.js';
import { TLS_POLICY } from './policy.js';

/** Where a certificate came from. */
export type Origin = 'dir' | 'routes-file' | 'memory';

/** A certificate and key pair named by the routes file. */
export interface CertificateFiles {
  cert: string;
  key: string;
}

/** A certificate that passed every check, ready to serve. */
export interface Certificate {
  source: string;
  /** DNS names from subjectAltName, lower case; `*.example.com` for wildcards. */
  names: string[];
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the leaf certificate. */
  fingerprint: string;
  context: tls.SecureContext;
  /** For a server's own context (clients without SNI); never shown. */
  readonly pem: { cert: string; key: string };
}

interface Entry {
  source: string;
  origin: Origin;
  /** File name without extension, or the source of a certificate from memory: what --tls-default-cert names. */
  label: string;
  loaded: Certificate | undefined;
  /** Why the last read of this source was refused; empty when it is what serves. */
  problems: string[];
}

/** A pair of files to watch: the certificate, and the key unless the certificate file holds it. */
interface FilePair {
  origin: 'dir' | 'routes-file';
  cert: string;
  key: string | undefined;
  label: string;
}

export interface CertificateView {
  source: string;
  origin: Origin;
  names: string[];
  notBefore: string | null;
  notAfter: string | null;
  fingerprint: string | null;
  default: boolean;
  /** Whether a certificate from this source is serving (perhaps an older one than the problems are about). */
  serving: boolean;
  problems: string[];
}

export interface CertStoreOptions {
  /** Folder of PEM files (--tls-dir); missing means empty. */
  dir: string;
  /** --tls-default-cert: a file name without extension, or a DNS name. */
  defaultName?: string | undefined;
  log: Logger;
  /** How often files are checked for changes (ms). */
  pollInterval?: number;
  /** Session ticket keys to share with other processes serving the same ports; random when absent. */
  ticketKeys?: Buffer | undefined;
}

export interface CertStoreEvents {
  /** What serves changed: a certificate loaded, replaced or removed, or a new default. */
  change: [];
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const KEY_BLOCK = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/;
/** Larger files are not certificates; never read them whole. */
const MAX_FILE = 1024 * 1024;

class CertificateError extends Error {}

/** DNS names of a certificate's subjectAltName. */
function dnsNames(x509: crypto.X509Certificate): string[] {
  const out: string[] = [];
  for (const part of (x509.subjectAltName ?? '').split(',')) {
    const m = /^\s*DNS:(.+?)\s*$/.exec(part);
    if (m) out.push(m[1]!.toLowerCase());
  }
  return out;
}

/** Checks a PEM certificate (with its chain) and key, and builds the context that serves them. */
export function loadCertificate(source: string, certPem: string, keyPem: string, now = new Date()): Certificate {
  const certs = certPem.match(CERT_BLOCK);
  if (!certs) throw new CertificateError('no PEM certificate found');
  const keyMatch = KEY_BLOCK.exec(keyPem);
  if (!keyMatch) throw new CertificateError('no PEM private key found');
  if (keyMatch[1] === 'ENCRYPTED PRIVATE KEY') throw new CertificateError('the private key is encrypted; meshd needs it unencrypted');
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(certs[0]);
  } catch (err) {
    throw new CertificateError(`the certificate cannot be parsed: ${(err as Error).message}`);
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(keyMatch[0]);
  } catch (err) {
    throw new CertificateError(`the private key cannot be parsed: ${(err as Error).message}`);
  }
  if (!x509.checkPrivateKey(key)) throw new CertificateError('the private key does not match the certificate');
  const notBefore = new Date(x509.validFrom);
  const notAfter = new Date(x509.validTo);
  if (notAfter.getTime() <= now.getTime()) throw new CertificateError(`the certificate expired on ${notAfter.toISOString()}`);
  const pem = { cert: certs.join('\n') + '\n', key: keyMatch[0] + '\n' };
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ...TLS_POLICY, ...pem });
  } catch (err) {
    throw new CertificateError(`TLS refused the certificate: ${(err as Error).message}`);
  }
  return { source, names: dnsNames(x509), notBefore, notAfter, fingerprint: x509.fingerprint256, context, pem };
}

/** Whether `host` is one of `names`, or matches a wildcard among them (one label only). */
function namesMatch(names: string[], host: string): boolean {
  const dot = host.indexOf('.');
  return names.some((n) => n === host || (dot > 0 && n.startsWith('*.') && n.slice(2) === host.slice(dot + 1)));
}

/** A file's identity and version, so a poll reads only files that changed. */
function signature(file: string | undefined): string {
  if (!file) return '';
  try {
    const s = fs.statSync(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (err) {
    return `error:${(err as NodeJS.ErrnoException).code}`;
  }
}

function readPem(file: string): string {
  const size = fs.statSync(file).size;
  if (size > MAX_FILE) throw new CertificateError(`${file} is ${size} bytes, too large for a PEM certificate`);
  return fs.readFileSync(file, 'latin1');
}

/**
 * Certificate files in a folder: `NAME.crt` with `NAME.key`, `NAME.pem` with
 * `NAME-key.pem` or `NAME.key`, or a `.crt`/`.pem` holding both. Other files
 * (a Docker secret such as meshd's peer token) are not looked at.
 */
export function pairsInDir(dir: string, names: string[]): FilePair[] {
  const have = new Set(names);
  const out: FilePair[] = [];
  for (const name of [...names].sort()) {
    let base: string;
    let keys: string[];
    if (name.endsWith('.crt')) {
      base = name.slice(0, -4);
      keys = [`${base}.key`];
    } else if (name.endsWith('.pem') && !name.endsWith('-key.pem')) {
      base = name.slice(0, -4);
      keys = [`${base}-key.pem`, `${base}.key`];
    } else continue;
    const key = keys.find((k) => have.has(k));
    out.push({ origin: 'dir', cert: path.join(dir, name), key: key ? path.join(dir, key) : undefined, label: base });
  }
  return out;
}

export class CertStore extends EventEmitter<CertStoreEvents> {
  readonly dir: string;
  readonly defaultName: string | undefined;
  /** Session ticket keys shared by every context, so a client resumes whichever certificate served it. */
  readonly ticketKeys: Buffer;
  /** Certificates refused since start, for /metrics. */
  errors = 0;
  readonly #log: Logger;
  readonly #pollInterval: number;
  readonly #entries = new Map<string, Entry>();
  /** Version of each watched file pair, by certificate path. */
  readonly #seen = new Map<string, string>();
  #routesFiles: CertificateFiles[] = [];
  #exact = new Map<string, Certificate>();
  #wildcard = new Map<string, Certificate>();
  #default: Certificate | undefined;
  #dirProblem: string | undefined;
  #defaultWarned = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: CertStoreOptions) {
    super();
    this.dir = options.dir;
    this.defaultName = options.defaultName;
    this.#log = options.log;
    this.#pollInterval = options.pollInterval ?? 1000;
    this.ticketKeys = options.ticketKeys ?? crypto.randomBytes(48);
  }

  /** Reads the folder now, then looks for changes every poll interval. */
  start(): void {
    this.poll();
    this.#timer = setInterval(() => this.poll(), this.#pollInterval);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The certificates the routes file names; read now, and watched like the folder. */
  setRoutesFiles(files: CertificateFiles[]): void {
    if (JSON.stringify(files) === JSON.stringify(this.#routesFiles)) return;
    this.#routesFiles = files;
    this.poll();
  }

  /** Adds or replaces a certificate from memory (an ACME order, say); false when it was refused. */
  put(source: string, certPem: string, keyPem: string): boolean {
    return this.#load(source, 'memory', source, () => ({ cert: certPem, key: keyPem }));
  }

  /** Stops serving a source's certificate. */
  remove(source: string): void {
    if (!this.#entries.delete(source)) return;
    this.#seen.delete(source);
    this.#log.info({ source }, 'certificate removed');
    this.#reindex();
  }

  /** The certificate for an SNI name: exact, then wildcard (one label), then the default. */
  lookup(servername: string | undefined): Certificate | undefined {
    if (servername) {
      const name = servername.toLowerCase().replace(/\.$/, '');
      const exact = this.#exact.get(name);
      if (exact) return exact;
      const dot = name.indexOf('.');
      const wild = dot > 0 ? this.#wildcard.get(name.slice(dot + 1)) : undefined;
      if (wild) return wild;
    }
    return this.#default;
  }

  /** The certificate that names this host (exact or wildcard), if any: not the default served for want of one. */
  certificateFor(host: string): Certificate | undefined {
    const c = this.lookup(host);
    return c && namesMatch(c.names, host.toLowerCase()) ? c : undefined;
  }

  get default(): Certificate | undefined {
    return this.#default;
  }

  get size(): number {
    return [...this.#entries.values()].filter((e) => e.loaded).length;
  }

  /** Every source with its names, dates and problems: what /api/routes shows (no key). */
  view(now = new Date()): { dir: string; dirProblem?: string; defaultName: string | null; certificates: CertificateView[] } {
    const certificates = [...this.#entries.values()].map((e): CertificateView => {
      const c = e.loaded;
      const problems = [...e.problems];
      if (c && c.notAfter.getTime() <= now.getTime()) problems.push(`expired on ${c.notAfter.toISOString()}; still served until replaced`);
      if (c && c.names.length === 0) problems.push('no DNS names in subjectAltName: served only as the default certificate');
      return {
        source: e.source, origin: e.origin, names: c?.names ?? [],
        notBefore: c?.notBefore.toISOString() ?? null, notAfter: c?.notAfter.toISOString() ?? null, fingerprint: c?.fingerprint ?? null,
        default: c !== undefined && c === this.#default, serving: c !== undefined, problems,
      };
    });
    return { dir: this.dir, ...(this.#dirProblem ? { dirProblem: this.#dirProblem } : {}), defaultName: this.defaultName ?? null, certificates };
  }

  /** Re-reads every watched file whose size, time or inode changed; drops sources whose files left the folder. */
  poll(): void {
    const pairs = [...this.#dirPairs(), ...this.#routesFiles.map((f): FilePair => ({ origin: 'routes-file', cert: f.cert, key: f.key, label: path.basename(f.cert).replace(/\.[^.]*$/, '') }))];
    const wanted = new Set(pairs.map((p) => p.cert));
    let removed = false;
    for (const [source, e] of this.#entries) {
      if (e.origin === 'memory' || wanted.has(source)) continue;
      this.#entries.delete(source);
      this.#seen.delete(source);
      this.#log.info({ source }, 'certificate file gone; no longer served');
      removed = true;
    }
    if (removed) this.#reindex();
    for (const p of pairs) {
      const sig = `${p.origin}|${signature(p.cert)}|${p.key ?? ''}|${signature(p.key)}`;
      if (this.#seen.get(p.cert) === sig) continue;
      this.#seen.set(p.cert, sig);
      this.#load(p.cert, p.origin, p.label, () => {
        const cert = readPem(p.cert);
        return { cert, key: p.key ? readPem(p.key) : cert };
      });
    }
  }

  #dirPairs(): FilePair[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir).filter((n) => {
        try {
          return fs.statSync(path.join(this.dir, n)).isFile();
        } catch {
          return false;
        }
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const problem = code === 'ENOENT' ? undefined : `cannot read ${this.dir}: ${(err as Error).message}`;
      if (problem && problem !== this.#dirProblem) this.#log.warn({ dir: this.dir, err: problem }, 'cannot read the certificate folder');
      this.#dirProblem = problem;
      return [];
    }
    this.#dirProblem = undefined;
    return pairsInDir(this.dir, names);
  }

  #load(source: string, origin: Origin, label: string, read: () => { cert: string; key: string }): boolean {
    let entry = this.#entries.get(source);
    if (!entry) {
      entry = { source, origin, label, loaded: undefined, problems: [] };
      this.#entries.set(source, entry);
    }
    entry.origin = origin;
    entry.label = label;
    try {
      const pem = read();
      const cert = loadCertificate(source, pem.cert, pem.key);
      entry.loaded = cert;
      entry.problems = [];
      this.#log.info({ source, names: cert.names, notAfter: cert.notAfter.toISOString() }, 'certificate loaded');
      this.#reindex();
      return true;
    } catch (err) {
      const problem = err instanceof CertificateError ? err.message : `cannot read it: ${(err as Error).message}`;
      this.errors++;
      entry.problems = [problem];
      this.#log.warn({ source, problem, keeps: entry.loaded ? entry.loaded.names : null }, entry.loaded ? 'certificate refused; the previous one keeps serving' : 'certificate refused');
      return false;
    }
  }

  /** Rebuilds the name maps; for a name claimed twice, the certificate valid longest wins. */
  #reindex(): void {
    const exact = new Map<string, Certificate>();
    const wildcard = new Map<string, Certificate>();
    let first: Certificate | undefined;
    let named: Certificate | undefined;
    for (const e of this.#entries.values()) {
      const c = e.loaded;
      if (!c) continue;
      first ??= c;
      if (this.defaultName && !named && (e.label === this.defaultName || c.names.includes(this.defaultName.toLowerCase()))) named = c;
      for (const n of c.names) {
        const [map, key] = n.startsWith('*.') ? [wildcard, n.slice(2)] : [exact, n];
        const other = map.get(key);
        if (!other || other.notAfter < c.notAfter) map.set(key, c);
      }
    }
    const def = named ?? first;
    const missing = this.defaultName !== undefined && !named && first !== undefined;
    if (missing && !this.#defaultWarned) this.#log.warn({ name: this.defaultName, using: first!.source }, '--tls-default-cert names no loaded certificate; the first one is the default');
    this.#defaultWarned = missing;
    this.#exact = exact;
    this.#wildcard = wildcard;
    this.#default = def;
    this.emit('change');
  }
}
