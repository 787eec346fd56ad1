import { vi } from 'vitest'

/** A fake `fetch` answering by "METHOD /path" (query string ignored unless the key has one). */
export type Handler = (req: { method: string; url: string; body: unknown; headers: Record<string, string> }) => {
  status?: number
  body?: unknown
  headers?: Record<string, string>
}

export function jsonResponse(status: number, body?: unknown, headers: Record<string, string> = {}): Response {
  const text = body === undefined ? '' : JSON.stringify(body)
  const type = status >= 400 ? 'application/problem+json' : 'application/json'
  return new Response(status === 204 ? null : text, { status, headers: { 'Content-Type': type, ...headers } })
}

export function mockFetch(routes: Record<string, Handler | { status?: number; body?: unknown; headers?: Record<string, string> }>) {
  const calls: { method: string; url: string; body: unknown; headers: Record<string, string> }[] = []
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input)
    const method = (init?.method ?? 'GET').toUpperCase()
    const headers = (init?.headers ?? {}) as Record<string, string>
    const body = typeof init?.body === 'string' ? JSON.parse(init.body) : undefined
    const req = { method, url, body, headers }
    calls.push(req)
    const path = url.split('?')[0]
    const route = routes[`${method} ${url}`] ?? routes[`${method} ${path}`]
    if (!route) return jsonResponse(404, { status: 404, title: 'Not Found', detail: `no route ${method} ${url}` })
    const answer = typeof route === 'function' ? route(req) : route
    return jsonResponse(answer.status ?? 200, answer.body, answer.headers)
  })
  vi.stubGlobal('fetch', fn)
  return { fn, calls }
}

/** Let pending promises (and their `then`s) run. */
export async function flush(times = 20): Promise<void> {
  for (let i = 0; i < times; i++) await Promise.resolve()
  if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(0)
  else await new Promise((r) => setTimeout(r, 0))
  for (let i = 0; i < times; i++) await Promise.resolve()
}
