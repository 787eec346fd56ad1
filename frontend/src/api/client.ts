/**
 * The typed HTTP client: same-origin cookie session, CSRF header on unsafe methods, JSON in
 * and out, RFC 9457 problem details turned into ApiError. A 401 tells whoever registered with
 * `onUnauthorized` (the session store), so the login comes back without losing the route.
 */

export interface Problem {
  type?: string
  title?: string
  status?: number
  detail?: string
  [k: string]: unknown
}

export class ApiError extends Error {
  status: number
  problem: Problem | null

  constructor(status: number, problem: Problem | null, fallback?: string) {
    super(problem?.detail || problem?.title || fallback || `Request failed (HTTP ${status})`)
    this.name = 'ApiError'
    this.status = status
    this.problem = problem
  }
}

/** Query parameters; an array repeats the key (`status=open&status=acknowledged`), empty values are left out. */
export type Query = Record<string, string | number | boolean | undefined | null | readonly (string | number)[]>

export const CSRF_COOKIE = 'naboom_csrf'
export const CSRF_HEADER = 'X-CSRF-Token'

type UnauthorizedHandler = (path: string) => void
let unauthorizedHandler: UnauthorizedHandler | null = null

/** Register the callback run on a 401 (the session store does; returns an unregister function). */
export function onUnauthorized(handler: UnauthorizedHandler | null): () => void {
  unauthorizedHandler = handler
  return () => {
    if (unauthorizedHandler === handler) unauthorizedHandler = null
  }
}

export function readCookie(name: string): string | null {
  if (typeof document === 'undefined') return null
  for (const part of document.cookie.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim())
  }
  return null
}

export function buildUrl(path: string, query?: Query): string {
  if (!query) return path
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue
    if (Array.isArray(value)) for (const item of value) params.append(key, String(item))
    else params.append(key, String(value))
  }
  const qs = params.toString()
  if (!qs) return path
  return path + (path.includes('?') ? '&' : '?') + qs
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

async function readProblem(response: Response): Promise<Problem | null> {
  const text = await response.text().catch(() => '')
  if (!text) return null
  try {
    const parsed: unknown = JSON.parse(text)
    if (parsed && typeof parsed === 'object') return parsed as Problem
  } catch {
    /* not JSON */
  }
  return { detail: text.slice(0, 300), status: response.status }
}

async function request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json, application/problem+json' }
  const init: RequestInit = { method, credentials: 'same-origin', headers }
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  if (UNSAFE.has(method)) {
    const csrf = readCookie(CSRF_COOKIE)
    if (csrf) headers[CSRF_HEADER] = csrf
  }
  let response: Response
  try {
    response = await fetch(buildUrl(path, query), init)
  } catch (err) {
    // Network failure: status 0, so callers can tell "unreachable" from a refusal.
    throw new ApiError(0, null, navigator.onLine === false ? 'No network connection' : 'The server could not be reached')
  }
  if (!response.ok) {
    const problem = await readProblem(response)
    // A refused login is a wrong password, not an expired session.
    if (response.status === 401 && unauthorizedHandler && !path.startsWith('/api/auth/login')) unauthorizedHandler(path)
    throw new ApiError(response.status, problem)
  }
  if (response.status === 204) return undefined as T
  const text = await response.text()
  if (!text) return undefined as T
  const type = response.headers.get('Content-Type') || ''
  if (type.includes('json')) return JSON.parse(text) as T
  return text as unknown as T
}

export const api = {
  get<T>(path: string, query?: Query): Promise<T> {
    return request<T>('GET', path, undefined, query)
  },
  post<T>(path: string, body?: unknown): Promise<T> {
    return request<T>('POST', path, body)
  },
  patch<T>(path: string, body?: unknown): Promise<T> {
    return request<T>('PATCH', path, body)
  },
  put<T>(path: string, body?: unknown): Promise<T> {
    return request<T>('PUT', path, body)
  },
  del<T = void>(path: string): Promise<T> {
    return request<T>('DELETE', path)
  },
}

/** A readable message for any error thrown by the client (or anything else). */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message
  if (err instanceof Error) return err.message
  return String(err)
}
