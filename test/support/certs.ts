// Certificates made by openssl at test time (no key is ever committed): a test
// CA and leaf certificates it signs, with the DNS names and validity a test asks for.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Pem {
  cert: string;
  key: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export class TestCA {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-ca-'));
  readonly certFile = path.join(this.dir, 'ca.crt');
  #serial = 1;

  constructor() {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
      '-days', '2', '-subj', '/CN=meshd test CA'], this.dir);
  }

  get pem(): string {
    return fs.readFileSync(this.certFile, 'utf8');
  }

  /** A leaf certificate for `names` (DNS SANs), valid `days` from now (negative: already expired). */
  issue(names: string[], days = 1, cn = names[0] ?? 'no-names'): Pem {
    const n = this.#serial++;
    const ext = `leaf${n}.ext`;
    fs.writeFileSync(path.join(this.dir, ext), names.length ? `subjectAltName=${names.map((d) => `DNS:${d}`).join(',')}\n` : 'basicConstraints=CA:FALSE\n');
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `leaf${n}.key`, '-out', `leaf${n}.csr`, '-subj', `/CN=${cn}`], this.dir);
    openssl(['x509', '-req', '-in', `leaf${n}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(1000 + n), '-out', `leaf${n}.crt`,
      '-days', String(days), '-extfile', ext], this.dir);
    return { cert: fs.readFileSync(path.join(this.dir, `leaf${n}.crt`), 'utf8'), key: fs.readFileSync(path.join(this.dir, `leaf${n}.key`), 'utf8') };
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Writes a file by write-then-rename, as secret and config tools do, so a reader never sees half of it. */
export function writeAtomic(file: string, text: string): void {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}
