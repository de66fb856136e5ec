import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { failedTask } from '../../src/discovery/container-events.js';

const attrs = { 'com.docker.swarm.task.id': 'abc123', exitCode: '137' };

describe('container events', () => {
  const cases: [object, { task: string; reason: RegExp } | undefined][] = [
    [{ Type: 'container', Action: 'die', Actor: { Attributes: attrs } }, { task: 'abc123', reason: /died \(exit code 137\)/ }],
    [{ Type: 'container', Action: 'health_status: unhealthy', Actor: { Attributes: attrs } }, { task: 'abc123', reason: /unhealthy/ }],
    [{ Type: 'container', Action: 'health_status: healthy', Actor: { Attributes: attrs } }, undefined],
    [{ Type: 'container', Action: 'kill', Actor: { Attributes: attrs } }, undefined],
    [{ Type: 'container', Action: 'die', Actor: { Attributes: { exitCode: '0' } } }, undefined],
    [{ Type: 'network', Action: 'die', Actor: { Attributes: attrs } }, undefined],
  ];
  for (const [event, want] of cases) {
    it(JSON.stringify(event), () => {
      const got = failedTask(event);
      if (!want) return assert.equal(got, undefined);
      assert.equal(got?.task, want.task);
      assert.match(got!.reason, want.reason);
    });
  }
});
