// Routing-table cost at swarm scale, in process: synthetic snapshots of 100,
// 1,000 and 10,000 services (5 or 10 running tasks each, 100 nodes, every
// service on port 80 with a host of its own) go through the Compiler and
// Table.apply as discovery hands them on. Reported, in CPU ms (user + system):
// the first, full load; one task changing its address, each change on a
// snapshot of fresh objects (the first change after the load on its own, then
// the median of several once the JIT is warm), and the same change handed to
// Compiler.change alone, as a peer's delta or discovery says it; then RSS and
// heap with the largest table loaded.
// Run with `npm run bench:scale` (node --expose-gc, so the memory figures are after a collection).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SwarmService, SwarmSnapshot, SwarmTask } from '../src/discovery/snapshot.js';
import { Compiler } from '../src/table/incremental.js';
import { Table } from '../src/table/table.js';

const NODES = 100;
const SIZES = [100, 1_000, 10_000];
const TASKS_PER_SERVICE = [5, 10];
/** Changes measured, after as many that warm up the JIT (the first is reported on its own). */
const CHANGES = 9;
const options = { defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: ['meshd'], ipvs: false };

function snapshot(services: number, tasksEach: number): SwarmSnapshot {
  const svc: SwarmService[] = [];
  const tasks: SwarmTask[] = [];
  for (let s = 0; s < services; s++) {
    const id = `svc${String(s).padStart(6, '0')}`;
    svc.push({
      ID: id, Version: { Index: 10 + s }, CreatedAt: new Date(Date.UTC(2026, 0, 1) + s * 1000).toISOString(), UpdatedAt: '2026-02-01T00:00:00Z',
      Spec: { Name: `app${s}`, Labels: { 'meshd.publish': '80:8080/http', 'meshd.hosts': `app${s}.example.com` } },
    });
    for (let t = 0; t < tasksEach; t++) {
      const n = s * tasksEach + t;
      tasks.push({
        ID: `task${String(n).padStart(8, '0')}`, ServiceID: id, NodeID: `node${n % NODES}`, Slot: t + 1,
        DesiredState: 'running', Status: { State: 'running', Timestamp: '2026-02-01T00:00:00Z' },
        NetworksAttachments: [{ Network: { ID: 'net-meshd', Spec: { Name: 'meshd' } }, Addresses: [`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}/8`] }],
      });
    }
  }
  const nodes = Array.from({ length: NODES }, (_, i) => ({ ID: `node${i}`, Description: { Hostname: `host${i}` } }));
  return { services: svc, tasks, nodes, networks: [{ Id: 'net-meshd', Name: 'meshd' }, { Id: 'net-ingress', Name: 'ingress' }] };
}

/** CPU milliseconds (user + system) that `f` takes. */
function cpu(f: () => void): number {
  const t0 = process.cpuUsage();
  f();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const mib = (n: number) => Math.round(n / 2 ** 20);
const gc = () => (globalThis as { gc?: () => void }).gc?.();
/** Collects the bench's own garbage and lets the collector's threads finish, which process.cpuUsage() would count. */
async function settle(): Promise<void> {
  gc();
  await new Promise((r) => setTimeout(r, 200));
}

/** In a process of its own, so that nothing else has grown it: the largest snapshot, compiled and applied, and what the process holds then. */
async function memory(): Promise<void> {
  const snap = JSON.parse(JSON.stringify(snapshot(SIZES.at(-1)!, TASKS_PER_SERVICE.at(-1)!))) as SwarmSnapshot;
  const { table: t, changes } = new Compiler(options).update(snap);
  new Table({ drainTimeout: 1000 }).apply(t, changes);
  await settle();
  const mem = process.memoryUsage();
  console.log(`RSS ${mib(mem.rss)} MiB, heap used ${mib(mem.heapUsed)} MiB`);
}

if (process.argv.includes('--memory')) {
  await memory();
  process.exit(0);
}

const rows: string[] = [];
for (const services of SIZES) {
  for (const tasksEach of TASKS_PER_SERVICE) {
    await settle();
    // Through JSON, as discovery has it from the engine or a peer.
    const text = JSON.stringify(snapshot(services, tasksEach));
    const base = JSON.parse(text) as SwarmSnapshot;
    const compiler = new Compiler(options);
    const table = new Table({ drainTimeout: 1000 });
    await settle();
    let applyMs = 0;
    const full = cpu(() => {
      const { table: t, changes } = compiler.update(base);
      applyMs = cpu(() => table.apply(t, changes));
    });
    const compileMs = full - applyMs;

    const change: number[] = [];
    const changeCompile: number[] = [];
    let first = 0;
    for (let i = 0; i < 2 * CHANGES; i++) {
      // A poll's answer: every object new, one task moved to another address.
      const next = JSON.parse(text) as SwarmSnapshot;
      const task = next.tasks[(i * 7919) % next.tasks.length]!;
      task.NetworksAttachments![0]!.Addresses = [`172.16.0.${i + 1}/16`];
      await settle();
      let applied = false;
      let a = 0;
      const total = cpu(() => {
        const { table: t, changes } = compiler.update(next);
        a = cpu(() => { applied = table.apply(t, changes); });
      });
      if (!applied) throw new Error('the change was not applied');
      if (i === 0) first = total;
      if (i < CHANGES) continue;
      change.push(total);
      changeCompile.push(total - a);
    }
    // The same change handed on alone, as a peer's delta or discovery says it.
    const alone: number[] = [];
    for (let i = 0; i < 2 * CHANGES; i++) {
      const task = structuredClone(base.tasks[(i * 7919 + 13) % base.tasks.length]!);
      task.NetworksAttachments![0]!.Addresses = [`172.17.0.${i + 1}/16`];
      await settle();
      let applied = false;
      const total = cpu(() => {
        const { table: t, changes } = compiler.change({ services: [], removedServices: [], tasks: [task], removedTasks: [] });
        applied = table.apply(t, changes);
      });
      if (!applied) throw new Error('the change was not applied');
      if (i >= CHANGES) alone.push(total);
    }
    const [c, all] = [median(changeCompile), median(change)];
    rows.push(`| ${services.toLocaleString('en')} | ${(services * tasksEach).toLocaleString('en')} | ${compileMs.toFixed(0)} + ${applyMs.toFixed(0)} = ${full.toFixed(0)} | ${first.toFixed(0)} | ${c.toFixed(1)} + ${(all - c).toFixed(1)} = ${all.toFixed(1)} | ${median(alone).toFixed(2)} |`);
  }
}
console.log('| services | tasks | full load: compile + apply | first change after it | one task change: compile + apply (median) | the same change alone: compile + apply (median) |');
console.log('|---:|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(r);
const held = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--memory'], { encoding: 'utf8' }).trim();
console.log(`\nWith ${SIZES.at(-1)!.toLocaleString('en')} services and ${(SIZES.at(-1)! * TASKS_PER_SERVICE.at(-1)!).toLocaleString('en')} tasks loaded (snapshot, compiler and table, in a fresh process): ${held}.`);
