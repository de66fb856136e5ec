// Automatic certificates (ACME, RFC 8555, through acme-client) validated by
// HTTP-01. One instance orders (the caller decides which, with start/stop); its
// challenge tokens go into a ChallengeSet that every instance answers from, and
// each issued certificate goes to `onCertificate` for the caller to serve and
// send to the others.
//
// With a storage folder, the account key and every issued certificate and key
// are kept there, so a restart, or the next instance to order, reuses a
// still-valid certificate instead of ordering again. A certificate is renewed at
// two thirds of its lifetime; a failed attempt is retried with a doubling delay
// while the previous certificate, if still valid, keeps being served.
//
// Private keys go to `onCertificate` and to storage (mode 0600) only: never to
// a log line, an error message or `status()`.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import acme from 'acme-client';
import type { Logger } from '../core/log.js';
import type { ChallengeSet } from './challenges.js';

export interface AcmeOptions {
  directoryUrl: string;
  /** Contact address given to the CA with the account; optional for Let's Encrypt. */
  email?: string;
  /** PEM file of an extra CA to trust for the directory's HTTPS (a private or test CA). */
  caFile?: string;
  /** Folder for the account key and issued certificates and keys; without it, everything lives in memory. */
  storageDir?: string;
  log: Logger;
  /** Where tokens of pending HTTP-01 challenges are put, for every instance to answer. */
  challenges: ChallengeSet;
  /** A certificate to serve for `names`: on issue, and on start for each still-valid stored one. `certPem` is the full chain. */
  onCertificate: (names: string[], certPem: string, keyPem: string) => void;
  /** Called once a token is in `challenges` and before the CA is asked to validate it: resolve once every instance answers it. */
  propagate?: () => Promise<void>;
  /** Delay after a failed attempt: `min`, doubling with each failure in a row, up to `max` (ms). Default 1 min to 1 h. */
  retry?: { min: number; max: number };
  now?: () => number;
}

export interface CertificateStatus {
  /** Normalised: lower case, sorted, no duplicates. */
  names: string[];
  /** `valid` while an unexpired certificate is held, even if renewing it fails; `failed` when none is held and the last attempt failed. */
  state: 'pending' | 'valid' | 'failed';
  notAfter?: string;
  renewAt?: string;
  /** Failed attempts in a row. */
  failures: number;
  lastError?: string;
  /** When this instance next orders (or renews) this certificate; only while it is the one that orders. */
  nextAttempt?: string;
}

interface Issued {
  names: string[];
  certPem: string;
  keyPem: string;
  notBefore: number;
  notAfter: number;
}

interface Entry {
  names: string[];
  key: string;
  next: number;
  failures: number;
  lastError?: string;
  /** A name no CA validates over HTTP-01: never ordered. */
  invalid?: string;
  /** Stored certificate looked up since the last start. */
  loaded: boolean;
}

/** A name in a public DNS zone: at least two labels, the last one not numeric (no IP address, no wildcard). */
const DNS_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?=[a-z0-9-]*[a-z])[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** setTimeout takes at most 2^31-1 ms; waking up hourly also absorbs clock jumps. */
const MAX_SLEEP = 60 * 60_000;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function normalizeNames(names: string[]): string[] {
  return [...new Set(names.map((n) => n.trim().toLowerCase().replace(/\.$/, '')).filter(Boolean))].sort();
}

function renewAt(c: Issued): number {
  return c.notBefore + Math.floor((c.notAfter - c.notBefore) * 2 / 3);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Checks that `certPem` is a chain whose leaf covers `names` and matches `keyPem`. */
function parseIssued(names: string[], certPem: string, keyPem: string): Issued {
  const pems = certPem.match(PEM_CERT);
  if (!pems) throw new Error('no certificate in the chain');
  const leaf = new X509Certificate(pems[0]);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw new Error('unreadable private key'); // the parser's message may quote the key
  }
  if (!leaf.checkPrivateKey(key)) throw new Error('the private key does not match the certificate');
  const sans = new Set((leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4).toLowerCase()));
  const missing = names.filter((n) => !sans.has(n));
  if (missing.length) throw new Error(`the certificate does not cover ${missing.join(', ')}`);
  return { names, certPem: pems.join('\n') + '\n', keyPem, notBefore: Date.parse(leaf.validFrom), notAfter: Date.parse(leaf.validTo) };
}

function fileBase(names: string[]): string {
  const first = names[0]!.slice(0, 200);
  return names.length === 1 ? first : `${first}+${createHash('sha256').update(names.join(',')).digest('hex').slice(0, 12)}`;
}

/** Write then rename, so a crash never leaves half a file. */
async function writeAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, file);
}

export class AcmeManager {
  readonly #o: AcmeOptions;
  readonly #now: () => number;
  readonly #retry: { min: number; max: number };
  #entries = new Map<string, Entry>();
  /** Certificates held, by normalised names; may outlive a route until it returns. */
  readonly #certs = new Map<string, Issued>();
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> | undefined;
  #client: Promise<acme.Client> | undefined;
  /** Totals since construction, for metrics. */
  readonly counters = { issued: 0, failures: 0 };

  constructor(options: AcmeOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#retry = options.retry ?? { min: 60_000, max: 60 * 60_000 };
    // acme-client sends every request through its one axios instance: this is
    // the only place to trust an extra CA and to bound a request that hangs.
    if (options.caFile) acme.axios.defaults.httpsAgent = new https.Agent({ ca: [...tls.rootCertificates, readFileSync(options.caFile, 'utf8')] });
    if (!acme.axios.defaults.timeout) acme.axios.defaults.timeout = 30_000;
  }

  /** The certificates wanted, each a list of DNS names; replaces the previous list. */
  want(list: string[][]): void {
    const next = new Map<string, Entry>();
    for (const raw of list) {
      const names = normalizeNames(raw);
      const key = names.join(',');
      if (!names.length || next.has(key)) continue;
      const old = this.#entries.get(key);
      if (old) {
        next.set(key, old);
        continue;
      }
      const bad = names.find((n) => !DNS_NAME.test(n));
      const entry: Entry = { names, key, next: this.#now(), failures: 0, loaded: false };
      if (bad) entry.invalid = `${JSON.stringify(bad)} is not a DNS name a CA validates over HTTP-01`;
      next.set(key, entry);
    }
    this.#entries = next;
    this.#kick();
  }

  /** Starts ordering: resolves once stored certificates are loaded and handed to onCertificate; orders run in the background. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    // An order kicked by want() meanwhile loads its own entry first: load each once.
    for (const e of [...this.#entries.values()]) if (!e.invalid && !e.loaded) await this.#load(e);
    this.#kick();
  }

  /** Stops ordering and cancels timers; resolves when an attempt in flight has ended (acme-client cannot abort one). */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#client = undefined;
    for (const e of this.#entries.values()) e.loaded = false;
    await this.#busy;
  }

  /**
   * A certificate issued by another instance (received over the peer stream): kept, and stored,
   * so that this instance does not order it again if it becomes the one that orders.
   * Not passed to onCertificate: the caller already serves it. False if refused or not newer.
   */
  async adopt(names: string[], certPem: string, keyPem: string): Promise<boolean> {
    const normalized = normalizeNames(names);
    const key = normalized.join(',');
    let issued: Issued;
    try {
      if (!normalized.length || !normalized.every((n) => DNS_NAME.test(n))) throw new Error('not DNS names');
      issued = parseIssued(normalized, certPem, keyPem);
    } catch (err) {
      this.#o.log.warn({ names: normalized, err: (err as Error).message }, 'refused a certificate from a peer');
      return false;
    }
    const held = this.#certs.get(key);
    if (held && held.notAfter >= issued.notAfter) return false;
    this.#certs.set(key, issued);
    const e = this.#entries.get(key);
    if (e) {
      e.failures = 0;
      e.lastError = undefined;
      e.next = renewAt(issued);
    }
    await this.#save(issued);
    this.#kick();
    return true;
  }

  status(): CertificateStatus[] {
    const now = this.#now();
    return [...this.#entries.values()].map((e) => {
      const c = this.#certs.get(e.key);
      const valid = c !== undefined && c.notAfter > now;
      const s: CertificateStatus = { names: [...e.names], state: valid ? 'valid' : e.invalid || e.failures > 0 ? 'failed' : 'pending', failures: e.failures };
      if (c) {
        s.notAfter = iso(c.notAfter);
        s.renewAt = iso(renewAt(c));
      }
      const error = e.invalid ?? e.lastError;
      if (error) s.lastError = error;
      if (!e.invalid && this.#running) s.nextAttempt = iso(e.next);
      return s;
    });
  }

  /** Runs the most overdue entry, or sleeps until the next one is due. One order at a time. */
  #kick(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#running || this.#busy) return;
    // An entry added since start has not looked for a stored certificate yet: due at once.
    const dueAt = (e: Entry) => (e.loaded ? e.next : 0);
    let soonest: Entry | undefined;
    for (const e of this.#entries.values()) if (!e.invalid && (!soonest || dueAt(e) < dueAt(soonest))) soonest = e;
    if (!soonest) return;
    const wait = dueAt(soonest) - this.#now();
    if (wait > 0) {
      this.#timer = setTimeout(() => this.#kick(), Math.min(wait, MAX_SLEEP));
      return;
    }
    this.#busy = this.#attempt(soonest).finally(() => {
      this.#busy = undefined;
      this.#kick();
    });
  }

  async #attempt(e: Entry): Promise<void> {
    if (!e.loaded) {
      await this.#load(e);
      if (e.next > this.#now()) return;
    }
    try {
      const issued = await this.#order(e.names);
      this.counters.issued++;
      this.#certs.set(e.key, issued);
      e.failures = 0;
      e.lastError = undefined;
      e.next = renewAt(issued);
      this.#o.log.info({ names: e.names, notAfter: iso(issued.notAfter), renewAt: iso(e.next) }, 'certificate issued');
      await this.#save(issued);
      if (this.#entries.get(e.key) === e) this.#emit(issued);
    } catch (err) {
      this.counters.failures++;
      e.failures++;
      e.lastError = String((err as Error).message ?? err).slice(0, 1000);
      const delay = Math.min(this.#retry.min * 2 ** (e.failures - 1), this.#retry.max);
      e.next = this.#now() + delay;
      const held = this.#certs.get(e.key);
      this.#o.log.warn({ names: e.names, err: e.lastError, failures: e.failures, retryIn: delay, validUntil: held && iso(held.notAfter) },
        held && held.notAfter > this.#now() ? 'certificate renewal failed; the current one is still served' : 'certificate order failed');
    }
  }

  /** Takes the newer of the held and the stored certificate; a still-valid one is served and renewed at 2/3 of its life. */
  async #load(e: Entry): Promise<void> {
    e.loaded = true;
    const held = this.#certs.get(e.key);
    const stored = await this.#read(e.names);
    const best = stored && (!held || stored.notAfter > held.notAfter) ? stored : held;
    if (!best || best.notAfter <= this.#now()) return;
    this.#certs.set(e.key, best);
    if (e.failures === 0) e.next = renewAt(best);
    this.#o.log.info({ names: e.names, notAfter: iso(best.notAfter), renewAt: iso(renewAt(best)), stored: best === stored }, 'certificate loaded');
    this.#emit(best);
  }

  async #order(names: string[]): Promise<Issued> {
    const client = await this.#acmeClient();
    // X.509 caps a common name at 64 characters; the names that count are the altNames.
    const commonName = names.find((n) => n.length <= 64);
    const [keyPem, csr] = await acme.crypto.createCsr({ commonName, altNames: names }, await acme.crypto.createPrivateEcdsaKey());
    const chain = await client.auto({
      csr,
      email: this.#o.email,
      termsOfServiceAgreed: true,
      // acme-client's own check fetches the token from port 80 of each name
      // itself; the CA's validation is the one that counts.
      skipChallengeVerification: true,
      challengePriority: ['http-01'],
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        if (challenge.type !== 'http-01') throw new Error(`${authz.identifier.value}: the CA offers no http-01 challenge`);
        this.#o.challenges.set(challenge.token, keyAuthorization);
        await this.#o.propagate?.();
      },
      challengeRemoveFn: async (_authz, challenge) => {
        if (challenge.type === 'http-01') this.#o.challenges.delete(challenge.token);
      },
    });
    return parseIssued(names, chain, keyPem.toString());
  }

  #acmeClient(): Promise<acme.Client> {
    this.#client ??= this.#accountKey().then(
      (accountKey) => new acme.Client({ directoryUrl: this.#o.directoryUrl, accountKey, backoffAttempts: 12, backoffMin: 250, backoffMax: 10_000 }),
      (err: unknown) => {
        this.#client = undefined;
        throw err;
      });
    return this.#client;
  }

  /** The stored account key, or a new one (the CA finds an existing account by its key). */
  async #accountKey(): Promise<Buffer> {
    const dir = this.#o.storageDir;
    if (!dir) return acme.crypto.createPrivateEcdsaKey();
    const file = path.join(dir, 'account.key');
    try {
      return await readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const key = await acme.crypto.createPrivateEcdsaKey();
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeAtomic(file, key.toString(), 0o600);
    return key;
  }

  #files(names: string[]): { cert: string; key: string } | undefined {
    if (!this.#o.storageDir) return undefined;
    const base = path.join(this.#o.storageDir, 'certificates', fileBase(names));
    return { cert: `${base}.crt`, key: `${base}.key` };
  }

  async #read(names: string[]): Promise<Issued | undefined> {
    const files = this.#files(names);
    if (!files) return undefined;
    try {
      return parseIssued(names, await readFile(files.cert, 'utf8'), await readFile(files.key, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#o.log.warn({ names, file: files.cert, err: (err as Error).message }, 'ignoring a stored certificate');
      return undefined;
    }
  }

  /** The key first: a crash between the two writes leaves a mismatched pair, which #read refuses. */
  async #save(c: Issued): Promise<void> {
    const files = this.#files(c.names);
    if (!files) return;
    try {
      await mkdir(path.dirname(files.cert), { recursive: true, mode: 0o700 });
      await writeAtomic(files.key, c.keyPem, 0o600);
      await writeAtomic(files.cert, c.certPem, 0o644);
    } catch (err) {
      this.#o.log.error({ names: c.names, err: (err as Error).message }, 'could not store a certificate; it is served, but ordered again after a restart');
    }
  }

  #emit(c: Issued): void {
    try {
      this.#o.onCertificate([...c.names], c.certPem, c.keyPem);
    } catch (err) {
      this.#o.log.error({ names: c.names, err: (err as Error).message }, 'onCertificate failed');
    }
  }
}
