// /metrics as Prometheus reads it: valid exposition text (each family's HELP
// and TYPE once, its samples together, histograms cumulative with _count equal
// to +Inf), series per route and per backend up to --metrics-detail-max, and
// past it latency per port and backend counters per route that equal the sums
// of the detailed series.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { type FileRoute, TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get } from '../support/net.js';

interface Sample { name: string; labels: Map<string, string>; value: number }
interface Family { type: string; samples: Sample[] }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function parseLabels(text: string, line: string): Map<string, string> {
  const labels = new Map<string, string>();
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    assert.ok(!labels.has(m[1]!), `label ${m[1]} twice: ${line}`);
    labels.set(m[1]!, m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c)));
    if (m[3] === '') break;
  }
  assert.equal(re.lastIndex, text.length, `malformed labels: ${line}`);
  return labels;
}

/** Parses the text format strictly: throws on anything Prometheus would refuse or misread. */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  const families = new Map<string, Family>();
  const help = new Set<string>();
  const seen = new Set<string>();
  let current: string | undefined;
  const familyOf = (sample: string) => {
    for (const name of [sample, sample.replace(/_(bucket|sum|count)$/, '')]) if (families.has(name)) return name;
    return undefined;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    // Blank lines are allowed between families (prom-client writes them).
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      assert.match(name, NAME);
      if (kind === 'HELP') {
        assert.ok(!help.has(name), `HELP ${name} twice`);
        help.add(name);
      } else {
        assert.ok(!families.has(name), `TYPE ${name} twice`);
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest), `TYPE ${name} ${rest}`);
        families.set(name, { type: rest, samples: [] });
      }
      current = name;
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample: ${JSON.stringify(line)}`);
    // Prometheus reads values as Go's ParseFloat does: NaN and Inf in any case.
    const value = /^[+-]?inf$/i.test(m[3]!) ? (m[3]!.startsWith('-') ? -Infinity : Infinity) : Number(m[3]);
    assert.ok(/^nan$/i.test(m[3]!) || !Number.isNaN(value), `value of ${line}`);
    const family = familyOf(m[1]!);
    assert.ok(family, `${m[1]} has no TYPE`);
    assert.equal(family, current, `${m[1]} is not beside the rest of its family`);
    const labels = parseLabels(m[2] ?? '', line);
    const key = `${m[1]}{${[...labels].sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;
    assert.ok(!seen.has(key), `series twice: ${key}`);
    seen.add(key);
    families.get(family)!.samples.push({ name: m[1]!, labels, value });
  }
  for (const [name, f] of families) if (f.type === 'histogram') checkHistogram(name, f);
  return families;
}

const without = (labels: Map<string, string>, ...names: string[]) => [...labels].filter(([k]) => !names.includes(k)).sort().map(([k, v]) => `${k}=${v}`).join(',');

/** Buckets rise with le and end at +Inf, which equals _count; _sum is there. */
function checkHistogram(name: string, f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const key = without(s.labels, 'le');
    let h = series.get(key);
    if (!h) series.set(key, (h = { buckets: [] }));
    if (s.name === `${name}_bucket`) h.buckets.push([s.labels.get('le') === '+Inf' ? Infinity : Number(s.labels.get('le')), s.value]);
    else if (s.name === `${name}_sum`) h.sum = s.value;
    else if (s.name === `${name}_count`) h.count = s.value;
    else assert.fail(`${s.name} in histogram ${name}`);
  }
  for (const [key, h] of series) {
    assert.ok(h.buckets.length > 1 && h.sum !== undefined && h.count !== undefined, `${name}{${key}} is whole`);
    for (let i = 1; i < h.buckets.length; i++) {
      assert.ok(h.buckets[i]![0] > h.buckets[i - 1]![0], `${name}{${key}} le ascending`);
      assert.ok(h.buckets[i]![1] >= h.buckets[i - 1]![1], `${name}{${key}} cumulative`);
    }
    assert.equal(h.buckets.at(-1)![0], Infinity, `${name}{${key}} ends at +Inf`);
    assert.equal(h.buckets.at(-1)![1], h.count, `${name}{${key}} _count equals +Inf`);
  }
}

/** Sums a family's samples by the labels kept, sample name included. */
function sumBy(f: Family, keep: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of f.samples) {
    const key = `${s.name}{${keep.filter((k) => s.labels.has(k)).map((k) => `${k}=${s.labels.get(k)}`).join(',')}}`;
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

const value = (families: Map<string, Family>, name: string) => families.get(name)?.samples[0]?.value;

describe('/metrics', () => {
  let m: TestMeshd;
  let web: Backend;
  let flaky: Backend;
  let web2: Backend;
  let api: Backend;
  let ports: { web: number; tcp: number; solo: number };
  const logs: string[] = [];
  let routes: FileRoute[];
  /** The documented cost of the per-route and per-backend series: 38 samples per L7 route's histograms, 1 per route, 3 per backend. */
  const samples = (rs: FileRoute[]) => rs.reduce((n, r) => n + 1 + 3 * r.backends.length + (r.mode === 'tcp' ? 0 : 38), 0);
  const scrape = async () => {
    const res = await get(m.adminPort, '/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    return parseExposition(res.body);
  };

  before(async () => {
    ports = { web: await freePort(), tcp: await freePort(), solo: await freePort() };
    web = await new Backend('web').start();
    web2 = await new Backend('web2').start();
    api = await new Backend('api').start();
    // Answers probes, resets every request: upstream errors counted against it.
    flaky = await new Backend('flaky', (req, res) => (req.url === '/health' ? res.end('ok') : req.socket.destroy())).start();
    routes = [
      { name: 'web', publish: ports.web, mode: 'http', hosts: ['web.test'], backends: [web.address, flaky.address] },
      { name: 'api', publish: ports.web, mode: 'http', hosts: ['api.test'], backends: [api.address] },
      { name: 'db', publish: ports.tcp, mode: 'tcp', backends: [web.address] },
      { name: 'solo', publish: ports.solo, mode: 'http', backends: [web2.address, api.address] },
    ];
    m = new TestMeshd();
    m.log = createLogger('info', { write: (s: string) => void logs.push(s) });
    await m.start(routes, ['--metrics-detail-max', String(samples(routes))]);
    for (let i = 0; i < 12; i++) {
      await get(ports.web, '/', { host: 'web.test' }).catch(() => undefined);
      await get(ports.web, '/', { host: 'api.test' });
      await get(ports.tcp, '/');
      await get(ports.solo, '/');
    }
  });
  after(async () => {
    await m.stop();
    await Promise.all([web, web2, api, flaky].map((b) => b.kill()));
  });

  let detail: Map<string, Family>;

  it('writes series per route and per backend while the table is within the limit', async () => {
    detail = await scrape();
    assert.equal(value(detail, 'meshd_metrics_summarised'), 0);
    const counted = ['meshd_backend_requests_total', 'meshd_backend_active', 'meshd_backend_healthy', 'meshd_route_eligible_backends', 'meshd_request_duration_seconds', 'meshd_upstream_response_seconds']
      .reduce((n, name) => n + detail.get(name)!.samples.length, 0);
    assert.equal(value(detail, 'meshd_metrics_detail_samples'), counted, 'the gauge counts the samples written');
    assert.equal(counted, samples(routes), 'exactly at the limit');
    assert.equal(detail.get('meshd_backend_requests_total')!.samples.length, 6, 'one series per backend');
    assert.ok(detail.get('meshd_backend_requests_total')!.samples.every((s) => s.labels.has('backend') && s.labels.has('node')));
    assert.ok(detail.get('meshd_backend_errors_total')!.samples.some((s) => s.labels.get('backend') === flaky.address && s.value > 0), 'the resetting backend has errors');
    const histograms = detail.get('meshd_request_duration_seconds')!.samples.filter((s) => s.name.endsWith('_count'));
    assert.deepEqual(histograms.map((s) => s.labels.get('route')).sort(), ['api', 'solo', 'web'], 'one per L7 route');
    assert.ok(histograms.every((s) => s.value >= 12));
    // The registry's families come first and are whole too.
    assert.ok(detail.has('meshd_process_process_cpu_user_seconds_total') && detail.has('meshd_table_version'));
  });

  it('past the limit writes latency per port and backend counters per route, equal to the sums of the detail, and logs it once', async () => {
    const grown = routes.map((r) => (r.name === 'solo' ? { ...r, backends: [...r.backends, flaky.address] } : r));
    await m.update(grown);
    const summary = await scrape();
    assert.equal(value(summary, 'meshd_metrics_summarised'), 1);
    assert.equal(value(summary, 'meshd_metrics_detail_samples'), samples(routes) + 3);
    assert.equal(summary.has('meshd_backend_healthy'), false, 'backend health is left out');
    assert.match((await get(m.adminPort, '/metrics')).body, /^# HELP meshd_backend_requests_total .*Summarised per route/m);

    // The added backend has served nothing, so the sums are those of the detail scrape.
    const counters = (f: Map<string, Family>, name: string) => f.get(name)!.samples.filter((s) => s.labels.get('backend') !== flaky.address || s.labels.get('route') !== 'solo');
    for (const name of ['meshd_backend_requests_total', 'meshd_backend_errors_total', 'meshd_backend_active']) {
      const rows = summary.get(name)!.samples;
      assert.ok(rows.every((s) => !s.labels.has('backend') && !s.labels.has('node') && s.labels.has('route')), `${name}: route and port only`);
      assert.deepEqual(sumBy(summary.get(name)!, ['route', 'port', 'code']), sumBy({ type: '', samples: counters(detail, name) }, ['route', 'port', 'code']), name);
    }
    assert.ok(sumBy(summary.get('meshd_backend_errors_total')!, ['route']).get('meshd_backend_errors_total{route=web}')! > 0);
    assert.deepEqual(summary.get('meshd_route_eligible_backends')!.samples.map((s) => s.labels.get('route')).sort(), ['api', 'db', 'solo', 'web']);

    for (const name of ['meshd_request_duration_seconds', 'meshd_upstream_response_seconds']) {
      const merged = summary.get(name)!;
      assert.deepEqual([...new Set(merged.samples.map((s) => s.labels.get('port')))].sort(), [String(ports.web), String(ports.solo)].sort(), `${name}: one per port with L7 routes`);
      assert.ok(merged.samples.every((s) => !s.labels.has('route')));
      const fromDetail = sumBy(detail.get(name)!, ['port', 'le']);
      for (const [key, v] of sumBy(merged, ['port', 'le'])) {
        if (key.includes('_sum')) assert.ok(Math.abs(v - fromDetail.get(key)!) < 1e-9, key);
        else assert.equal(v, fromDetail.get(key), key);
      }
      assert.equal(sumBy(merged, ['port', 'le']).size, fromDetail.size, name);
    }

    await scrape();
    const warned = logs.filter((l) => l.includes('/metrics summarised'));
    assert.equal(warned.length, 1, 'logged once over three scrapes');
    assert.equal(JSON.parse(warned[0]!).level, 40);
  });

  it('goes back to the detail when the table shrinks to the limit', async () => {
    await m.update(routes);
    const back = await scrape();
    assert.equal(value(back, 'meshd_metrics_summarised'), 0);
    assert.equal(back.get('meshd_backend_healthy')!.samples.length, 6);
    assert.ok(logs.some((l) => l.includes('/metrics back to series per route and per backend')));
  });
});
