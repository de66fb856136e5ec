import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { proxyV2Header } from '../../src/proxy/proxy-protocol.js';

const SIG = '0d0a0d0a000d0a515549540a';

describe('PROXY protocol v2 header', () => {
  it('encodes an IPv4 connection (also when the socket shows it as IPv4-mapped IPv6)', () => {
    const h = proxyV2Header({ address: '::ffff:192.0.2.1', port: 56324 }, { address: '198.51.100.7', port: 443 });
    assert.equal(h.toString('hex'), SIG + '21' + '11' + '000c' + 'c0000201' + 'c6336407' + 'dc04' + '01bb');
  });

  it('encodes an IPv6 connection', () => {
    const h = proxyV2Header({ address: '2001:db8::1', port: 1 }, { address: '::1', port: 2 });
    assert.equal(h.subarray(12, 16).toString('hex'), '21210024');
    assert.equal(h.subarray(16, 32).toString('hex'), '20010db8000000000000000000000001');
    assert.equal(h.subarray(32, 48).toString('hex'), '00000000000000000000000000000001');
    assert.equal(h.readUInt16BE(48), 1);
    assert.equal(h.readUInt16BE(50), 2);
  });

  it('falls back to LOCAL when the addresses are unknown', () => {
    assert.equal(proxyV2Header({}, {}).toString('hex'), SIG + '20000000');
  });
});
