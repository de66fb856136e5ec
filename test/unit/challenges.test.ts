import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { answerChallenge, ChallengeSet, type ChallengeSnapshot } from '../../src/tls/challenges.js';

const TOKEN = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA';
const KEY_AUTH = `${TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI`;

describe('ChallengeSet', () => {
  it('answers a known token on GET, and nothing once it is deleted', () => {
    const set = new ChallengeSet();
    set.set(TOKEN, KEY_AUTH);
    assert.equal(answerChallenge(set, 'GET', `/.well-known/acme-challenge/${TOKEN}`), KEY_AUTH);
    set.delete(TOKEN);
    assert.equal(answerChallenge(set, 'GET', `/.well-known/acme-challenge/${TOKEN}`), undefined);
  });

  const misses: [string | undefined, string | undefined, string][] = [
    ['POST', `/.well-known/acme-challenge/${TOKEN}`, 'another method'],
    [undefined, `/.well-known/acme-challenge/${TOKEN}`, 'no method'],
    ['GET', undefined, 'no url'],
    ['GET', `/.well-known/acme-challenge/${TOKEN}x`, 'an unknown token'],
    ['GET', `/.well-known/acme-challenge/${TOKEN}?a=1`, 'a query string'],
    ['GET', `/.well-known/acme-challenge/${TOKEN}/`, 'a trailing slash'],
    ['GET', `/.well-known/acme-challenge/../acme-challenge/${TOKEN}`, 'a dot segment'],
    ['GET', '/.well-known/acme-challenge/', 'an empty token'],
    ['GET', `/.well-known/acme-challenge/${TOKEN.slice(0, 10)}%2F${TOKEN.slice(10)}`, 'an escaped character'],
    ['GET', `/.well-known/acme-challenge/${TOKEN}=`, 'base64 padding'],
    ['GET', `/other/${TOKEN}`, 'another path'],
    ['GET', `http://a.test/.well-known/acme-challenge/${TOKEN}`, 'an absolute-form target'],
  ];
  for (const [method, url, what] of misses) {
    it(`answers nothing for ${what}`, () => {
      const set = new ChallengeSet();
      set.set(TOKEN, KEY_AUTH);
      assert.equal(answerChallenge(set, method, url), undefined);
    });
  }

  it('refuses a malformed token or a key authorization for another token', () => {
    const set = new ChallengeSet();
    assert.throws(() => set.set('a/b', 'a/b.x'), /not an ACME token/);
    assert.throws(() => set.set('', '.x'), /not an ACME token/);
    assert.throws(() => set.set(TOKEN, `other.${KEY_AUTH.split('.')[1]}`), /not a key authorization/);
    assert.throws(() => set.set(TOKEN, TOKEN), /not a key authorization/);
    assert.equal(set.size, 0);
  });

  it('streams snapshots to another set, which answers the same tokens', () => {
    const leader = new ChallengeSet();
    const follower = new ChallengeSet();
    const seen: ChallengeSnapshot[] = [];
    const off = leader.onChange((s) => {
      seen.push(s);
      follower.apply(JSON.parse(JSON.stringify(s)) as ChallengeSnapshot);
    });
    leader.set(TOKEN, KEY_AUTH);
    leader.set(TOKEN, KEY_AUTH); // unchanged: no event
    leader.set('second', 'second.thumb');
    assert.equal(answerChallenge(follower, 'GET', `/.well-known/acme-challenge/${TOKEN}`), KEY_AUTH);
    assert.equal(answerChallenge(follower, 'GET', '/.well-known/acme-challenge/second'), 'second.thumb');
    leader.delete(TOKEN);
    leader.delete(TOKEN); // absent: no event
    assert.equal(answerChallenge(follower, 'GET', `/.well-known/acme-challenge/${TOKEN}`), undefined);
    assert.deepEqual(seen, [{ [TOKEN]: KEY_AUTH }, { [TOKEN]: KEY_AUTH, second: 'second.thumb' }, { second: 'second.thumb' }]);
    off();
    leader.set(TOKEN, KEY_AUTH);
    assert.equal(seen.length, 3);
  });

  it('apply drops malformed entries and fires only on a real change', () => {
    const set = new ChallengeSet();
    let events = 0;
    set.onChange(() => events++);
    set.apply({ [TOKEN]: KEY_AUTH, 'bad token': 'bad token.x', other: `${TOKEN}.x`, num: 5 as unknown as string });
    assert.deepEqual(set.snapshot(), { [TOKEN]: KEY_AUTH });
    assert.equal(events, 1);
    set.apply({ [TOKEN]: KEY_AUTH });
    assert.equal(events, 1);
    set.apply({});
    assert.equal(set.size, 0);
    assert.equal(events, 2);
  });
});
