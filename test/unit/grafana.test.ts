// The Grafana board in deploy/grafana asks only for metrics meshd exports, by
// labels those metrics have: a renamed metric or label breaks this test, not a
// panel someone opens months later.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createMetrics, TABLE_FAMILIES } from '../../src/admin/metrics.js';
import { silentLogger } from '../../src/core/log.js';
import { ProxyStats } from '../../src/proxy/context.js';
import { Table } from '../../src/table/table.js';
import { CertStore } from '../../src/tls/store.js';

const BOARD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../deploy/grafana/meshd.json');

interface Panel { title: string; targets: { expr: string }[] }

describe('Grafana board', () => {
  const board = JSON.parse(fs.readFileSync(BOARD, 'utf8')) as { panels: Panel[]; templating: { list: { query: { query: string } }[] } };
  const { registry } = createMetrics(new Table({ drainTimeout: 1000 }), new ProxyStats(), new CertStore({ dir: '/nonexistent', log: silentLogger() }));
  const exported = new Map<string, string[] | undefined>();
  for (const m of registry.getMetricsAsArray() as unknown as { name: string; labelNames?: string[] }[]) exported.set(m.name, m.labelNames);
  for (const f of TABLE_FAMILIES) exported.set(f.name, f.labelNames);

  it('has panels, each with a query', () => {
    assert.ok(board.panels.length >= 8);
    for (const p of board.panels) assert.ok(p.targets.length > 0 && p.targets.every((t) => t.expr.includes('meshd_')), p.title);
  });

  const exprs = [...board.panels.flatMap((p) => p.targets.map((t) => ({ title: p.title, expr: t.expr }))), ...board.templating.list.map((v) => ({ title: 'variable', expr: v.query.query }))];
  for (const { title, expr } of exprs) {
    it(`${title}: ${expr.slice(0, 60)}…`, () => {
      const names = [...expr.matchAll(/meshd_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
      for (const name of names) {
        assert.ok(exported.has(name), `${name} is not exported`);
        const labels = exported.get(name);
        if (!labels) continue;
        for (const by of expr.matchAll(/by \(([^)]*)\)/g)) {
          for (const label of by[1]!.split(',').map((s) => s.trim())) {
            if (label === 'le' || label === 'instance') continue;
            assert.ok(labels.includes(label), `${name} has no label ${label} (has ${labels.join(', ')})`);
          }
        }
      }
    });
  }
});
