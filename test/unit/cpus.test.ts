import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { autoWorkers, quotaCpus } from '../../src/workers/cpus.js';

describe('--workers auto', () => {
  it('reads a cgroup v2 quota as whole CPUs, rounded up', () => {
    assert.equal(quotaCpus('max 100000\n'), undefined);
    assert.equal(quotaCpus('150000 100000\n'), 2);
    assert.equal(quotaCpus('50000 100000\n'), 1);
    assert.equal(quotaCpus('200000 100000'), 2);
    assert.equal(quotaCpus(''), undefined);
  });

  it('is the CPUs of the affinity mask, capped by the quota', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-cpus-'));
    try {
      const file = path.join(dir, 'cpu.max');
      fs.writeFileSync(file, '100000 100000\n');
      assert.equal(autoWorkers(file), 1);
      fs.writeFileSync(file, 'max 100000\n');
      assert.equal(autoWorkers(file), os.availableParallelism());
      assert.equal(autoWorkers(path.join(dir, 'missing')), os.availableParallelism());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
