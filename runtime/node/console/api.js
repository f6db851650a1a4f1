// The node's HTTP API as the console uses it: JSON requests on this origin, with the token the
// user entered (kept in sessionStorage) as a bearer token.

const TOKEN_KEY = 'cella.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** One path segment, escaped (a key may hold `/`, `?`, `<`...). */
export const seg = (s) => encodeURIComponent(s);

/** An answer that is not 2xx: its status and the reason from the node's JSON error body. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Sends a request; the parsed JSON answer, or throws an ApiError naming the reason. */
export async function request(method, path, body, contentType) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined && contentType) headers['Content-Type'] = contentType;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'network', `the node did not answer (${e.message})`);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) {
    const err = data && data.error;
    const message = err && err.message ? err.message : (typeof data === 'string' && data) || resp.statusText;
    throw new ApiError(resp.status, err ? err.code : 'http', `${resp.status} ${err ? err.code + ': ' : ''}${message}`);
  }
  return data;
}

export const get = (path) => request('GET', path);
export const postJson = (path, value) => request('POST', path, value === undefined ? '' : JSON.stringify(value), 'application/json');

/** The node's metrics as text (OpenMetrics). */
export async function metricsText() {
  const resp = await fetch('/metrics', { cache: 'no-store' });
  if (!resp.ok) throw new ApiError(resp.status, 'http', `${resp.status} reading /metrics`);
  return resp.text();
}
