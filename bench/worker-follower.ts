// The worker's side of a swarm change, as a worker meshd runs it: a
// PeerFollower reading the manager's stream (a full snapshot, then deltas, each
// handed to the incremental compiler as a change) and the live table. Run as a
// child of peer-deltas.ts; after each table it reports the CPU this process spent since the previous
// one (it is otherwise idle: heartbeats only), and its RSS.
import { silentLogger } from '../src/core/log.js';
import { PeerFollower } from '../src/discovery/peer.js';
import { Compiler, type CompilerUpdate } from '../src/table/incremental.js';
import { Table } from '../src/table/table.js';

const [peer, token] = process.argv.slice(2) as [string, string];
const compiler = new Compiler({ defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: [], ipvs: false });
const table = new Table({ drainTimeout: 1000 });
let since = process.cpuUsage();
const apply = ({ table: next, changes }: CompilerUpdate) => {
  table.apply(next, changes);
  const cpu = process.cpuUsage(since);
  since = process.cpuUsage();
  if (process.connected) process.send!({ cpuMs: (cpu.user + cpu.system) / 1000, routes: table.routes.size, rssMiB: process.memoryUsage().rss / 2 ** 20 });
};
const follower = new PeerFollower({
  peers: [peer], port: 0, token, log: silentLogger(),
  onSnapshot: (snapshot) => apply(compiler.update(snapshot)),
  onChange: (change) => apply(compiler.change(change)),
  onError: (err) => { if (process.connected) process.send!({ error: (err as Error).message }); },
});
follower.start();
// The parent may exit while a report is on its way: the channel's EPIPE ends this process too.
const done = () => {
  follower.stop();
  process.exit(0);
};
process.on('disconnect', done);
process.on('error', done);
