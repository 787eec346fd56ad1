/**
 * Test support for the admin specs (not imported by the app): a fake backend behind
 * `fetch`, so the specs exercise the real API client (CSRF header, JSON, problem details).
 */
import { vi } from 'vitest'

export interface Call {
  method: string
  path: string
  query: URLSearchParams
  body: unknown
  headers: Record<string, string>
}

/** An answer with a status; a handler returning anything else answers 200 with it as JSON. */
export class Reply {
  constructor(
    readonly status: number,
    readonly body: unknown = null,
  ) {}
}

export function reply(status: number, body: unknown = null): Reply {
  return new Reply(status, body)
}

/** A problem-details answer, as the backend sends errors. */
export function problem(status: number, detail: string, extra: Record<string, unknown> = {}): Reply {
  return new Reply(status, { status, title: 'Error', detail, ...extra })
}

type Handler = (call: Call, match: RegExpMatchArray) => unknown

interface Route {
  method: string
  pattern: RegExp
  handler: Handler
}

export function fakeBackend() {
  const routes: Route[] = []
  const calls: Call[] = []

  function on(method: string, pattern: string | RegExp, handler: Handler) {
    const re = typeof pattern === 'string' ? new RegExp(`^${pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : pattern
    // Newer registrations win, so a test can override a default.
    routes.unshift({ method, pattern: re, handler })
    return api
  }

  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input), 'http://monitor.test')
    const method = (init.method ?? 'GET').toUpperCase()
    const headers = Object.fromEntries(Object.entries((init.headers ?? {}) as Record<string, string>))
    const call: Call = {
      method,
      path: url.pathname,
      query: url.searchParams,
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
      headers,
    }
    calls.push(call)
    for (const r of routes) {
      if (r.method !== method) continue
      const m = url.pathname.match(r.pattern)
      if (!m) continue
      const out = r.handler(call, m)
      const answer = out instanceof Reply ? out : new Reply(200, out)
      const status = answer.status
      if (status === 204) return new Response(null, { status })
      const type = status >= 400 ? 'application/problem+json' : 'application/json'
      return new Response(JSON.stringify(answer.body), { status, headers: { 'Content-Type': type } })
    }
    return new Response(JSON.stringify({ status: 404, title: 'Not Found', detail: `no fake for ${method} ${url.pathname}` }), {
      status: 404,
      headers: { 'Content-Type': 'application/problem+json' },
    })
  })

  const api = {
    on,
    calls,
    fetch: fetchMock,
    install() {
      vi.stubGlobal('fetch', fetchMock)
      return api
    },
    /** Calls of one method to paths matching. */
    find(method: string, path: string | RegExp): Call[] {
      return calls.filter((c) => c.method === method && (typeof path === 'string' ? c.path === path : path.test(c.path)))
    },
  }
  return api
}

export function page<T>(items: T[], offset = 0, limit = 25, total = items.length) {
  return { items, total, limit, offset }
}

export const REGIONS = [
  { code: 'ZA-LP', name: 'Limpopo', timezone: 'Africa/Johannesburg', created_at: '2026-01-01T00:00:00Z' },
  { code: 'ZA-MP', name: 'Mpumalanga', timezone: 'Africa/Johannesburg', created_at: '2026-01-01T00:00:00Z' },
]

/** Let pending promises and Vue's scheduler run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await new Promise((r) => setTimeout(r, 0))
  }
}
