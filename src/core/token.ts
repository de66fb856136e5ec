// Shared-secret bearer tokens, as the peer protocol and the admin API use them.
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';

/** A token file's content, trimmed; undefined when the file is missing, unreadable or empty. */
export function readToken(path: string): string | undefined {
  try {
    const token = fs.readFileSync(path, 'utf8').trim();
    return token || undefined;
  } catch {
    return undefined;
  }
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Whether an Authorization header carries `Bearer <token>`. Digests are compared,
 * so the time taken says nothing about the token, not even its length.
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer +(.*)$/i.exec(header ?? '');
  return m !== null && secretMatches(m[1]!, token);
}

/** Whether `given` equals `secret`, in a time that says nothing about either. */
export function secretMatches(given: string, secret: string): boolean {
  return timingSafeEqual(digest(given), digest(secret));
}
