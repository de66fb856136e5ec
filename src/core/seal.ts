// Private keys on the peer stream: sealed with AES-256-GCM under a key derived
// from the peer token (HKDF-SHA256), a random nonce per message, the names the
// key belongs to as associated data (a sealed key cannot be replayed under
// other names). The stream is plain HTTP on the overlay network: the token
// authenticates requests, and this keeps keys out of the bytes on the wire.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

export interface Sealed {
  /** base64: 12-byte nonce, ciphertext, 16-byte tag. */
  nonce: string;
  data: string;
  tag: string;
}

/** The 32-byte key that seals private keys between instances sharing `token`. */
export function sealingKey(token: string): Buffer {
  return Buffer.from(hkdfSync('sha256', token, 'meshd peer stream', 'meshd acme private keys v1', 32));
}

export function seal(key: Buffer, plaintext: string, aad: string): Sealed {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(aad));
  const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { nonce: nonce.toString('base64'), data: data.toString('base64'), tag: cipher.getAuthTag().toString('base64') };
}

/** Throws on a wrong key, altered data or other names: nothing of the plaintext is in the message. */
export function unseal(key: Buffer, sealed: Sealed, aad: string): string {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.nonce, 'base64'));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]).toString('utf8');
  } catch {
    throw new Error('cannot unseal: another token, or the message was altered');
  }
}
