// Balancing policies: how a route picks among its eligible backends. Each is
// rebuilt when the eligible set changes (rare) and picks in O(1) or O(log n)
// (every request): round-robin, least-conn (buckets by in-flight count),
// p2c (two random choices) and source-hash (a hash ring over the client's
// address, so a backend joining or leaving moves about 1/n of the clients).
import type { Balance } from './spec.js';

/** What a policy needs of a backend. */
export interface Pickable {
  /** In-flight requests (L7) or connections (L4). */
  active: number;
  /** Stable across nodes and tables (the task ID): places it on the hash ring. */
  readonly id: string;
  /** In rotation now (source-hash keeps every backend on its ring and skips the others). */
  readonly eligible: boolean;
}

export interface Balancer<B extends Pickable> {
  /** The eligible backends, in a stable order, and all of the route's. */
  reset(eligible: B[], all: B[]): void;
  /** A backend other than `avoid` when there is one; `ip` is the client's address. */
  pick(avoid: B | undefined, ip: string | undefined): B | undefined;
  /** `b.active` changed by one. */
  moved(b: B): void;
}

export function createBalancer<B extends Pickable>(policy: Balance | undefined): Balancer<B> {
  switch (policy) {
    case 'least-conn': return new LeastConn<B>();
    case 'p2c': return new PowerOfTwo<B>();
    case 'source-hash': return new SourceHash<B>();
    default: return new RoundRobin<B>();
  }
}

class RoundRobin<B extends Pickable> implements Balancer<B> {
  #list: B[] = [];
  #next = 0;

  reset(eligible: B[]): void {
    this.#list = eligible;
  }

  pick(avoid: B | undefined): B | undefined {
    const list = this.#list;
    const n = list.length;
    if (n === 0) return undefined;
    if (this.#next >= 0x3fffffff) this.#next = 0;
    let b = list[this.#next++ % n]!;
    if (b === avoid && n > 1) b = list[this.#next++ % n]!;
    return b === avoid ? undefined : b;
  }

  moved(): void {}
}

/** A backend's place in least-conn's buckets: a doubly-linked list per in-flight count. */
interface Slot<B> {
  b: B;
  bucket: number;
  prev: Slot<B> | undefined;
  next: Slot<B> | undefined;
}

/**
 * Fewest in-flight first. Backends sit in buckets by their in-flight count, each
 * a linked list; a count changes by one at a time, so moving a backend and
 * keeping the lowest non-empty bucket are O(1). A backend enters its new
 * bucket at the back, so ties go round-robin.
 */
class LeastConn<B extends Pickable> implements Balancer<B> {
  #heads: (Slot<B> | undefined)[] = [];
  #tails: (Slot<B> | undefined)[] = [];
  #slots = new Map<B, Slot<B>>();
  #min = 0;

  reset(eligible: B[]): void {
    this.#heads = [];
    this.#tails = [];
    this.#slots = new Map();
    this.#min = Infinity;
    for (const b of eligible) {
      const slot: Slot<B> = { b, bucket: b.active, prev: undefined, next: undefined };
      this.#slots.set(b, slot);
      this.#append(slot);
    }
    if (!Number.isFinite(this.#min)) this.#min = 0;
  }

  #append(slot: Slot<B>): void {
    const n = slot.bucket;
    const tail = this.#tails[n];
    slot.prev = tail;
    slot.next = undefined;
    if (tail) tail.next = slot;
    else this.#heads[n] = slot;
    this.#tails[n] = slot;
    if (n < this.#min) this.#min = n;
  }

  #unlink(slot: Slot<B>): void {
    const n = slot.bucket;
    if (slot.prev) slot.prev.next = slot.next;
    else this.#heads[n] = slot.next;
    if (slot.next) slot.next.prev = slot.prev;
    else this.#tails[n] = slot.prev;
  }

  pick(avoid: B | undefined): B | undefined {
    if (this.#slots.size === 0) return undefined;
    for (let n = this.#min; n < this.#heads.length; n++) {
      for (let s = this.#heads[n]; s; s = s.next) if (s.b !== avoid) return s.b;
    }
    return undefined;
  }

  moved(b: B): void {
    const slot = this.#slots.get(b);
    if (!slot) return;
    const from = slot.bucket;
    this.#unlink(slot);
    slot.bucket = Math.max(0, b.active);
    this.#append(slot);
    // The low-water mark only rises when its last backend left it, and then by one.
    if (from === this.#min && !this.#heads[from] && slot.bucket > from) this.#min = slot.bucket;
  }
}

/** Two distinct random backends, the one with fewer in flight (the first on a tie). */
class PowerOfTwo<B extends Pickable> implements Balancer<B> {
  #list: B[] = [];

  reset(eligible: B[]): void {
    this.#list = eligible;
  }

  pick(avoid: B | undefined): B | undefined {
    const list = avoid ? this.#list.filter((b) => b !== avoid) : this.#list;
    const n = list.length;
    if (n <= 1) return list[0];
    const i = Math.floor(Math.random() * n);
    let j = Math.floor(Math.random() * (n - 1));
    if (j >= i) j++;
    const a = list[i]!;
    const c = list[j]!;
    return c.active < a.active ? c : a;
  }

  moved(): void {}
}

/** Points each backend holds on the ring: enough for an even share at a few backends. */
const RING_POINTS = 160;

/**
 * A consistent-hash ring of all the route's backends (points from their stable
 * IDs, so every node builds the same ring); a client's address hashes to the
 * next point clockwise whose backend is eligible. Health changes leave the ring
 * as it is (a client of a backend that is out goes to the next one, and comes
 * back with it); only a change of the backends rebuilds it. Picks are a binary search.
 */
class SourceHash<B extends Pickable> implements Balancer<B> {
  #points = new Uint32Array(0);
  #owners: B[] = [];
  #members = '';
  #eligible = 0;
  /** Each backend's points, kept while it stays: a rebuild hashes only newcomers. */
  #cache = new Map<string, Uint32Array>();
  #rr = new RoundRobin<B>();

  reset(eligible: B[], all: B[]): void {
    this.#eligible = eligible.length;
    this.#rr.reset(eligible);
    const members = all.map((b) => b.id).join('\n');
    if (members === this.#members) return;
    this.#members = members;
    const cache = new Map<string, Uint32Array>();
    // Point and owner index in one number (2^32 × 2^20 < 2^53), so a typed array sorts them.
    const keys = new Float64Array(all.length * RING_POINTS);
    all.forEach((b, j) => {
      let points = this.#cache.get(b.id);
      if (!points) {
        points = new Uint32Array(RING_POINTS);
        for (let i = 0; i < RING_POINTS; i++) points[i] = murmur3(`${b.id}#${i}`);
      }
      cache.set(b.id, points);
      for (let i = 0; i < RING_POINTS; i++) keys[j * RING_POINTS + i] = points[i]! * 0x100000 + j;
    });
    this.#cache = cache;
    keys.sort();
    this.#points = new Uint32Array(keys.length);
    this.#owners = new Array<B>(keys.length);
    for (let k = 0; k < keys.length; k++) {
      const j = keys[k]! % 0x100000;
      this.#points[k] = (keys[k]! - j) / 0x100000;
      this.#owners[k] = all[j]!;
    }
  }

  pick(avoid: B | undefined, ip: string | undefined): B | undefined {
    const n = this.#points.length;
    if (this.#eligible === 0) return undefined;
    // Without an address (a unix socket) there is nothing to hash on.
    if (ip === undefined) return this.#rr.pick(avoid);
    const h = murmur3(ip);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    // On a retry, the next eligible backend clockwise: the one this client gets while `avoid` is out.
    for (let k = 0; k < n; k++) {
      const b = this.#owners[(lo + k) % n]!;
      if (b.eligible && b !== avoid) return b;
    }
    return undefined;
  }

  moved(): void {}
}

/** MurmurHash3 (x86, 32-bit) of a string's UTF-16 code units: fast and well spread. */
export function murmur3(text: string, seed = 0): number {
  let h = seed >>> 0;
  const len = text.length;
  let i = 0;
  for (; i + 1 < len; i += 2) {
    let k = (text.charCodeAt(i) & 0xffff) | ((text.charCodeAt(i + 1) & 0xffff) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < len) {
    let k = text.charCodeAt(i) & 0xffff;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= len * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
