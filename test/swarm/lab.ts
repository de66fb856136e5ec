// Starts and stops the swarm lab (lab.sh) for a test file, and runs docker
// commands against its nodes. Teardown runs even when a test fails.
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
// Compiled to dist/test/swarm; the script stays in the source tree.
export const LAB_SH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/swarm/lab.sh');

export interface LabNode {
  sock: string;
  addr: string;
}

export interface Lab {
  nodes: LabNode[];
  env: Record<string, string>;
}

/** Starts an N-node swarm; fails with lab.sh's own words when the machine cannot run one. */
export function labUp(nodes: number): Lab {
  let out: string;
  try {
    out = execFileSync('bash', [LAB_SH, 'up', String(nodes)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`lab.sh up ${nodes} failed: ${e.stderr?.trim() || e.stdout?.trim() || e.message}`);
  }
  const env: Record<string, string> = {};
  for (const m of out.matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]!] = m[2]!.replace(/^['"]|['"]$/g, '');
  const count = Number(env.MESHLAB_NODES ?? nodes);
  const list: LabNode[] = [];
  for (let i = 1; i <= count; i++) list.push({ sock: env[`MESHLAB_NODE${i}_SOCK`]!, addr: env[`MESHLAB_NODE${i}_ADDR`]! });
  if (!list[0]?.sock) throw new Error(`lab.sh up printed no node sockets:\n${out}`);
  return { nodes: list, env };
}

/** Builds meshd's image from the Dockerfile and the test app's, and loads them on every node. */
export function labImages(): void {
  try {
    execFileSync('bash', [path.join(path.dirname(LAB_SH), 'images.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  } catch (err) {
    throw new Error(`images.sh failed: ${(err as { stderr?: string }).stderr?.trim() ?? (err as Error).message}`);
  }
}

export function labDown(): void {
  execFileSync('bash', [LAB_SH, 'down'], { stdio: 'ignore', timeout: 120_000 });
}

/** Runs the docker CLI against one node's engine. */
export async function docker(node: LabNode, ...args: string[]): Promise<string> {
  const { stdout } = await run('docker', ['-H', `unix://${node.sock}`, ...args], { timeout: 60_000 });
  return stdout.trim();
}
