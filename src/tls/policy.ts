// The TLS settings every context and server of meshd shares: TLS 1.2 and 1.3
// only, Mozilla's "intermediate" suites (ECDHE only: DHE would need dhparams,
// and every client of that profile offers ECDHE), the client's preference first.
import type tls from 'node:tls';

const CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export const TLS_POLICY: tls.SecureContextOptions = {
  minVersion: 'TLSv1.2',
  maxVersion: 'TLSv1.3',
  ciphers: CIPHERS,
  ecdhCurve: 'X25519:P-256:P-384',
  honorCipherOrder: false,
};
