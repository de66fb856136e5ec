import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUCKETS, Histogram } from '../../src/table/latency.js';

describe('latency histogram', () => {
  it('counts each observation in the first bucket whose bound it does not exceed, +Inf past the last', () => {
    const h = new Histogram();
    for (const s of [0.00005, 0.0001, 0.00011, 0.003, 10, 11]) h.observe(s);
    const at = (bound: number) => h.counts[BUCKETS.indexOf(bound as (typeof BUCKETS)[number])];
    assert.equal(at(0.0001), 2, 'a value equal to a bound is in that bucket');
    assert.equal(at(0.00025), 1);
    assert.equal(at(0.005), 1);
    assert.equal(at(10), 1);
    assert.equal(h.counts[BUCKETS.length], 1, '+Inf');
    assert.equal(h.count, 6);
    assert.ok(Math.abs(h.sum - 21.00326) < 1e-9);
  });
});
