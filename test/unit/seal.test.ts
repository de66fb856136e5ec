import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seal, sealingKey, unseal } from '../../src/core/seal.js';

describe('sealing private keys for the peer stream', () => {
  const key = sealingKey('s3cret-token');
  const secret = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n';

  it('opens with the same token and names, with a fresh nonce each time', () => {
    const a = seal(key, secret, 'a.test');
    const b = seal(key, secret, 'a.test');
    assert.notEqual(a.nonce, b.nonce);
    assert.notEqual(a.data, b.data);
    assert.equal(unseal(sealingKey('s3cret-token'), a, 'a.test'), secret);
    assert.ok(!JSON.stringify(a).includes('PRIVATE') && !JSON.stringify(a).includes('MIGHAgEA'));
  });

  it('refuses another token, other names, and altered data, without quoting anything', () => {
    const sealed = seal(key, secret, 'a.test');
    const flipped = Buffer.from(sealed.data, 'base64');
    flipped[0]! ^= 1;
    for (const [k, s, names] of [
      [sealingKey('other-token'), sealed, 'a.test'],
      [key, sealed, 'b.test'],
      [key, { ...sealed, data: flipped.toString('base64') }, 'a.test'],
      [key, { ...sealed, tag: '' }, 'a.test'],
    ] as const) {
      assert.throws(() => unseal(k, s, names), /^Error: cannot unseal: another token, or the message was altered$/);
    }
  });
});
