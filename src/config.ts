// Flags and environment → one typed, validated config. Every flag `--some-name`
// can also be set as `MESHD_SOME_NAME`; a flag on the command line wins.
import { parseDuration } from './core/duration.js';
import { parseSize } from './core/size.js';
import { autoWorkers } from './workers/cpus.js';
import { COMPAT_KINDS, DEFAULT_ENTRYPOINTS, parseEntrypoints, type CompatKind, type Entrypoint } from './table/compat.js';

export interface Config {
  provider: 'swarm' | 'file';
  role: 'auto' | 'manager' | 'worker';
  peerAddr: { host: string; port: number };
  peers: string | undefined;
  peerTokenFile: string;
  routes: string | undefined;
  dockerHost: string;
  network: string | undefined;
  domain: string | undefined;
  compat: CompatKind[];
  compatEntrypoint: Record<string, Entrypoint>;
  resyncInterval: number;
  taskPollInterval: number;
  listenHost: string;
  adminAddr: { host: string; port: number };
  healthInterval: number;
  healthTimeout: number;
  healthRise: number;
  healthFall: number;
  connectTimeout: number;
  responseTimeout: number;
  drainTimeout: number;
  clientHeaderTimeout: number;
  clientIdleTimeout: number;
  tcpIdleTimeout: number;
  maxConnections: number;
  maxHeaderSize: number;
  adminTokenFile: string | undefined;
  acmeEmail: string | undefined;
  acmeDirectory: string;
  acmeCaFile: string | undefined;
  acmeStorage: string;
  tlsDir: string;
  tlsDefaultCert: string | undefined;
  logLevel: string;
  /** Per-route and per-backend samples /metrics writes at most before it summarises them. */
  metricsDetailMax: number;
  /** Proxy processes: 1 serves in the main process; more fork workers that each serve every port. */
  workers: number;
}

/** About 1,000 routes of 2 tasks, or 500 of 10, in full; each route's two latency histograms are 38 samples, each backend 3. */
export const METRICS_DETAIL_MAX = 50_000;

type Kind = 'string' | 'duration' | 'count' | 'number' | 'size' | 'addr' | 'choice' | 'list' | 'entrypoints' | 'workers';

interface FlagSpec {
  key: keyof Config;
  kind: Kind;
  help: string;
  default?: string;
  choices?: readonly string[];
  /** Bounds of a 'number' or 'size'. */
  min?: number;
  max?: number;
}

const FLAGS: Record<string, FlagSpec> = {
  provider: { key: 'provider', kind: 'choice', choices: ['swarm', 'file'], default: 'swarm', help: 'where routes come from: the Swarm API, or a routes file' },
  routes: { key: 'routes', kind: 'string', help: 'routes file (YAML) for --provider file; re-read when it changes' },
  role: { key: 'role', kind: 'choice', choices: ['auto', 'manager', 'worker'], default: 'auto', help: 'swarm: a manager reads the Docker API and serves peers; a worker follows a manager\'s meshd (auto: ask the engine)' },
  'peer-addr': { key: 'peerAddr', kind: 'addr', default: '0.0.0.0:9901', help: 'manager: HOST:PORT where worker instances fetch the swarm snapshot' },
  peers: { key: 'peers', kind: 'string', help: 'worker: DNS name listing manager instances, or host:port,... (default tasks.<own service name>)' },
  'peer-token-file': { key: 'peerTokenFile', kind: 'string', default: '/run/secrets/meshd_token', help: 'shared token that authenticates peers (a Docker secret)' },
  'docker-host': { key: 'dockerHost', kind: 'string', default: process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock', help: 'Docker Engine API address (unix:///path or tcp://host:port); read with GET only' },
  network: { key: 'network', kind: 'string', help: 'network on which to reach tasks (default: any network meshd shares with the task)' },
  domain: { key: 'domain', kind: 'string', help: 'HTTP routes without meshd.hosts answer <service>.DOMAIN, and <service without its stack prefix>.DOMAIN' },
  compat: { key: 'compat', kind: 'list', choices: COMPAT_KINDS, default: '', help: 'also route services without meshd.publish by their Traefik labels (traefik) or dockercloud/haproxy environment (dockercloud): a comma list, none by default' },
  'compat-entrypoint': { key: 'compatEntrypoint', kind: 'entrypoints', default: DEFAULT_ENTRYPOINTS, help: '--compat traefik: the published port of each Traefik entrypoint, NAME=PORT[/http|/https],...' },
  'resync-interval': { key: 'resyncInterval', kind: 'duration', default: '10s', help: 'full re-list of services, nodes and networks' },
  'task-poll-interval': { key: 'taskPollInterval', kind: 'duration', default: '1s', help: 'task re-list (the engine emits no task events)' },
  'listen-host': { key: 'listenHost', kind: 'string', default: '0.0.0.0', help: 'address the published ports listen on' },
  'admin-addr': { key: 'adminAddr', kind: 'addr', default: '127.0.0.1:9900', help: 'HOST:PORT of the admin API (/healthz, /readyz, /metrics, /api/routes)' },
  'health-interval': { key: 'healthInterval', kind: 'duration', default: '2s', help: 'active probe interval (label meshd.health.interval overrides)' },
  'health-timeout': { key: 'healthTimeout', kind: 'duration', default: '1s', help: 'active probe timeout (label meshd.health.timeout)' },
  'health-rise': { key: 'healthRise', kind: 'count', default: '2', help: 'passed probes that bring a backend back (label meshd.health.rise)' },
  'health-fall': { key: 'healthFall', kind: 'count', default: '3', help: 'failed probes that take a backend out (label meshd.health.fall)' },
  'connect-timeout': { key: 'connectTimeout', kind: 'duration', default: '3s', help: 'upstream connect timeout' },
  'response-timeout': { key: 'responseTimeout', kind: 'duration', default: '60s', help: 'L7: time to wait for a backend response head before answering 504' },
  'drain-timeout': { key: 'drainTimeout', kind: 'duration', default: '30s', help: 'how long a removed backend, or meshd on SIGTERM, lets in-flight work finish' },
  'client-header-timeout': { key: 'clientHeaderTimeout', kind: 'duration', default: '10s', help: 'L7: a client must send a whole request head within this time, or gets 408 and is closed' },
  'client-idle-timeout': { key: 'clientIdleTimeout', kind: 'duration', default: '60s', help: 'L7: a keep-alive client connection idle this long between requests is closed' },
  'tcp-idle-timeout': { key: 'tcpIdleTimeout', kind: 'duration', default: '1h', help: 'L4: a connection with no bytes either way for this long is closed (label meshd.idle-timeout overrides)' },
  'max-connections': { key: 'maxConnections', kind: 'number', min: 1, max: 10_000_000, default: '50000', help: 'client connections meshd holds at once, shared out evenly among workers; more wait in the kernel backlog (label meshd.max-connections limits one route)' },
  'max-header-size': { key: 'maxHeaderSize', kind: 'size', min: 1024, max: 1024 * 1024, default: '16KiB', help: 'L7: largest request head a client may send; larger ones get 431' },
  'admin-token-file': { key: 'adminTokenFile', kind: 'string', help: 'file holding a bearer token that every admin path but /healthz and /readyz then requires' },
  'acme-email': { key: 'acmeEmail', kind: 'string', help: 'ACME: contact address for the CA account that orders certificates for routes with tls: acme' },
  'acme-directory': { key: 'acmeDirectory', kind: 'string', default: 'https://acme-v02.api.letsencrypt.org/directory', help: 'ACME: directory URL of the CA (Let\'s Encrypt production; its staging is https://acme-staging-v02.api.letsencrypt.org/directory)' },
  'acme-ca-file': { key: 'acmeCaFile', kind: 'string', help: 'ACME: PEM file of an extra CA to trust for the directory\'s HTTPS (a private CA)' },
  'acme-storage': { key: 'acmeStorage', kind: 'string', default: '/var/lib/meshd/acme', help: 'ACME: folder for the account key and issued certificates and keys (managers; keep it on a volume)' },
  'tls-dir': { key: 'tlsDir', kind: 'string', default: '/run/secrets', help: 'folder of PEM certificates and keys for https ports (NAME.crt + NAME.key, NAME.pem + NAME-key.pem, or one file with both); re-read when they change' },
  'tls-default-cert': { key: 'tlsDefaultCert', kind: 'string', help: 'certificate for clients whose SNI name no certificate covers: a file name without extension, or a DNS name (default: the first loaded)' },
  'metrics-detail-max': { key: 'metricsDetailMax', kind: 'number', min: 0, max: 100_000_000, default: String(METRICS_DETAIL_MAX), help: '/metrics writes latency per route and counters per backend while they take at most this many samples (38 per L7 route, 3 per backend); past it, latency per port and backend counters summed per route' },
  workers: { key: 'workers', kind: 'workers', default: 'auto', help: 'proxy processes; 1 proxies in the one process, more fork workers that each serve every port while the main process discovers, probes and serves the admin API (auto: one per CPU meshd may use)' },
  'log-level': { key: 'logLevel', kind: 'choice', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', help: 'log level' },
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function envName(flag: string): string {
  return 'MESHD_' + flag.toUpperCase().replace(/-/g, '_');
}

function convert(flag: string, spec: FlagSpec, raw: string): unknown {
  const bad = (why: string) => new ConfigError(`--${flag}: ${why} (got ${JSON.stringify(raw)})`);
  switch (spec.kind) {
    case 'string':
      if (raw === '') throw bad('must not be empty');
      return raw;
    case 'choice':
      if (!spec.choices!.includes(raw)) throw bad(`must be one of ${spec.choices!.join(', ')}`);
      return raw;
    case 'duration': {
      const ms = parseDuration(raw);
      if (ms === undefined || ms <= 0) throw bad('must be a duration such as 500ms, 2s or 1m');
      return ms;
    }
    case 'count': {
      if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000) throw bad('must be a whole number from 1 to 1000');
      return Number(raw);
    }
    case 'number': {
      if (!/^\d+$/.test(raw) || Number(raw) < spec.min! || Number(raw) > spec.max!) throw bad(`must be a whole number from ${spec.min} to ${spec.max}`);
      return Number(raw);
    }
    case 'size': {
      const bytes = parseSize(raw);
      if (bytes === undefined || bytes < spec.min! || bytes > spec.max!) throw bad(`must be a size from ${spec.min} to ${spec.max} bytes, such as 16KiB`);
      return bytes;
    }
    case 'list': {
      const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
      const unknown = items.find((item) => !spec.choices!.includes(item));
      if (unknown !== undefined) throw bad(`"${unknown}" is not one of ${spec.choices!.join(', ')}`);
      return [...new Set(items)];
    }
    case 'entrypoints': {
      const entrypoints = parseEntrypoints(raw);
      if (typeof entrypoints === 'string') throw bad(entrypoints);
      return entrypoints;
    }
    case 'workers': {
      if (raw === 'auto') return autoWorkers();
      if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 256) throw bad('must be auto or a whole number from 1 to 256');
      return Number(raw);
    }
    case 'addr': {
      const m = /^(.*):(\d+)$/.exec(raw);
      const port = m ? Number(m[2]) : NaN;
      if (!m || !m[1] || port > 65535) throw bad('must be HOST:PORT');
      return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
    }
  }
}

export function helpText(): string {
  const lines = ['Usage: meshd [flags]', '       meshd status [--watch] [--json]   (the table of a running meshd; meshd status --help)', '', 'A routing-mesh load balancer for Docker Swarm.', '', 'Flags (each also settable as MESHD_<NAME> in the environment):'];
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const def = spec.default ? ` (default ${spec.default})` : '';
    lines.push(`  --${flag.padEnd(22)} ${spec.help}${def}`);
  }
  lines.push(`  --${'help'.padEnd(22)} show this text`);
  return lines.join('\n') + '\n';
}

/** Reads argv and env into a Config. Throws ConfigError with a one-line message naming the flag. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config | 'help' {
  const given = new Map<string, string>();
  for (const [flag] of Object.entries(FLAGS)) {
    const v = env[envName(flag)];
    if (v !== undefined) given.set(flag, v);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!m || !(m[1]! in FLAGS)) throw new ConfigError(`unknown argument ${JSON.stringify(arg)} (see meshd --help)`);
    let value = m[2];
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(`--${m[1]}: needs a value`);
    }
    given.set(m[1]!, value);
  }
  const out: Record<string, unknown> = {};
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const raw = given.get(flag) ?? spec.default;
    out[spec.key] = raw === undefined ? undefined : convert(flag, spec, raw);
  }
  const config = out as unknown as Config;
  if (config.provider === 'file' && !config.routes) throw new ConfigError('--routes: required with --provider file');
  if (config.domain !== undefined) {
    config.domain = config.domain.toLowerCase().replace(/^\.|\.$/g, '');
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(config.domain)) throw new ConfigError(`--domain: ${JSON.stringify(config.domain)} is not a DNS name such as local.dev`);
  }
  if (config.healthTimeout > config.healthInterval) {
    if (given.has('health-timeout')) throw new ConfigError('--health-timeout: must not exceed --health-interval');
    config.healthTimeout = config.healthInterval;
  }
  return config;
}
