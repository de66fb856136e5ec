// The ways meshd ends a request or connection itself: a stable code for logs,
// metrics and the x-meshd-error header, and the HTTP status a client sees.

const ErrorCodes = {
  NO_ROUTE: { status: 404, message: 'no route for this host on this port' },
  NO_HEALTHY_BACKEND: { status: 503, message: 'no healthy backend for this route' },
  BACKEND_FAILED: { status: 502, message: 'the backend failed to answer' },
  BACKEND_TIMEOUT: { status: 504, message: 'the backend did not answer in time' },
  BAD_REQUEST: { status: 400, message: 'malformed HTTP request' },
  REQUEST_TIMEOUT: { status: 408, message: 'the request head did not arrive in time' },
  HEADERS_TOO_LARGE: { status: 431, message: 'request head too large' },
  ROUTE_AT_CAPACITY: { status: 503, message: 'this route is at its connection limit' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export function errorStatus(code: ErrorCode): number {
  return ErrorCodes[code].status;
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 404: 'Not Found', 408: 'Request Timeout', 431: 'Request Header Fields Too Large', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/** A whole HTTP/1.1 error response that closes the connection, for a client meshd answers on the raw socket. */
export function rawErrorResponse(code: ErrorCode): string {
  const status = ErrorCodes[code].status;
  const body = errorBody(code);
  return `HTTP/1.1 ${status} ${REASONS[status]}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-meshd-error: ${code}\r\n\r\n${body}`;
}

/** The short body a client gets for an error status: one line it can read. */
export function errorBody(code: ErrorCode): string {
  return `${ErrorCodes[code].status} ${ErrorCodes[code].message}\n`;
}

/** Error codes of the network layer that mean no byte reached the backend. */
const CONNECT_ERRORS = new Set([
  'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT', 'EADDRNOTAVAIL',
]);

export function isConnectError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code !== undefined && CONNECT_ERRORS.has(code);
}

export function errorCodeOf(err: unknown): string {
  const e = err as { code?: string; name?: string } | null;
  return e?.code ?? e?.name ?? 'UNKNOWN';
}
