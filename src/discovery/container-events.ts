// Watches this node's own engine for containers of swarm tasks that die or turn
// unhealthy. Workers may read their engine's events even though they cannot list
// tasks, so every node takes such a task out of its picks at once, without
// waiting for the manager's next task poll.
import type { Logger } from '../core/log.js';
import type { DockerReader } from './swarm.js';

interface ContainerEvent {
  Type?: string;
  Action?: string;
  Actor?: { Attributes?: Record<string, string> };
}

const TASK_ID = 'com.docker.swarm.task.id';

/** The task whose container just failed, or undefined for any other event. */
export function failedTask(event: ContainerEvent): { task: string; reason: string } | undefined {
  const task = event.Actor?.Attributes?.[TASK_ID];
  if (event.Type !== 'container' || !task) return undefined;
  if (event.Action === 'die') return { task, reason: `container died (exit code ${event.Actor?.Attributes?.exitCode ?? '?'})` };
  if (event.Action === 'health_status: unhealthy') return { task, reason: 'container turned unhealthy' };
  return undefined;
}

export class ContainerWatcher {
  #stream: NodeJS.ReadableStream | undefined;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(
    readonly docker: DockerReader,
    readonly log: Logger,
    readonly onTaskFailed: (task: string, reason: string) => void,
  ) {}

  start(): void {
    if (this.#stopped) return;
    this.docker.getEvents({ filters: { type: ['container'] } }).then((stream) => {
      if (this.#stopped) return void (stream as unknown as { destroy(): void }).destroy();
      this.#stream = stream;
      let buffered = '';
      stream.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (!line.trim()) continue;
          try {
            const failed = failedTask(JSON.parse(line) as ContainerEvent);
            if (failed) this.onTaskFailed(failed.task, failed.reason);
          } catch (err) {
            this.log.warn({ err: (err as Error).message }, 'unreadable engine event');
          }
        }
      });
      const lost = () => {
        if (this.#stream !== stream) return;
        this.#stream = undefined;
        this.#again();
      };
      stream.on('end', lost);
      stream.on('error', lost);
      stream.on('close', lost);
    }, (err: unknown) => {
      this.log.warn({ err: (err as Error).message }, 'cannot watch container events; retrying');
      this.#again();
    });
  }

  #again(): void {
    if (this.#stopped) return;
    this.#retry = setTimeout(() => this.start(), 2000);
    this.#retry.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    (this.#stream as unknown as { destroy?(): void } | undefined)?.destroy?.();
  }
}
