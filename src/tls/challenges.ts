// HTTP-01 challenge tokens. The instance that orders certificates adds a token
// for each pending authorization; the CA may validate it through any node, so
// every instance answers from a copy of this set, streamed as snapshots
// (`onChange` on the ordering side, `apply` on the receiving side).
//
// A key authorization is public by design (the CA fetches it over plain HTTP);
// nothing secret lives here.

export const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/** RFC 8555 §8.1: a token is base64url without padding. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;
/** A key authorization is `token.thumbprint`, both base64url. */
const KEY_AUTHORIZATION = /^[A-Za-z0-9_-]{1,256}\.[A-Za-z0-9_-]{1,256}$/;

/** token → key authorization. Plain data, safe to send as JSON. */
export type ChallengeSnapshot = Record<string, string>;

export class ChallengeSet {
  #tokens = new Map<string, string>();
  readonly #listeners = new Set<(snapshot: ChallengeSnapshot) => void>();

  /** Throws on a malformed token or key authorization: the ordering side never makes one. */
  set(token: string, keyAuthorization: string): void {
    if (!TOKEN.test(token)) throw new Error(`not an ACME token: ${JSON.stringify(token)}`);
    if (!KEY_AUTHORIZATION.test(keyAuthorization) || !keyAuthorization.startsWith(token + '.')) {
      throw new Error(`not a key authorization for token ${token}`);
    }
    if (this.#tokens.get(token) === keyAuthorization) return;
    this.#tokens.set(token, keyAuthorization);
    this.#changed();
  }

  delete(token: string): void {
    if (this.#tokens.delete(token)) this.#changed();
  }

  get(token: string): string | undefined {
    return this.#tokens.get(token);
  }

  get size(): number {
    return this.#tokens.size;
  }

  snapshot(): ChallengeSnapshot {
    return Object.fromEntries(this.#tokens);
  }

  /** Receiving side: replaces the whole set with a snapshot from the ordering instance; malformed entries are dropped. */
  apply(snapshot: ChallengeSnapshot): void {
    const next = new Map<string, string>();
    for (const [token, keyAuthorization] of Object.entries(snapshot)) {
      if (TOKEN.test(token) && typeof keyAuthorization === 'string' && KEY_AUTHORIZATION.test(keyAuthorization) && keyAuthorization.startsWith(token + '.')) {
        next.set(token, keyAuthorization);
      }
    }
    const same = next.size === this.#tokens.size && [...next].every(([t, k]) => this.#tokens.get(t) === k);
    if (same) return;
    this.#tokens = next;
    this.#changed();
  }

  /** Calls `listener` with a fresh snapshot after every change; returns the unsubscribe function. */
  onChange(listener: (snapshot: ChallengeSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    if (this.#listeners.size === 0) return;
    const snapshot = this.snapshot();
    for (const l of this.#listeners) l(snapshot);
  }
}

/**
 * The body for `GET /.well-known/acme-challenge/TOKEN` (origin-form request target, as in `req.url`),
 * or undefined when the request is not one for a known token. Serve it as `text/plain` with status 200.
 */
export function answerChallenge(set: ChallengeSet, method: string | undefined, url: string | undefined): string | undefined {
  if (method !== 'GET' || !url?.startsWith(CHALLENGE_PREFIX)) return undefined;
  const token = url.slice(CHALLENGE_PREFIX.length);
  if (!TOKEN.test(token)) return undefined;
  return set.get(token);
}
