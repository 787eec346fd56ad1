import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { api, ApiError, buildUrl, CSRF_HEADER, onUnauthorized, readCookie } from '@/api/client'
import { mockFetch } from '@/test/fetchMock'

function setCookie(value: string) {
  document.cookie = value
}

describe('api client', () => {
  beforeEach(() => {
    setCookie('naboom_csrf=tok%2Den; path=/')
  })
  afterEach(() => {
    setCookie('naboom_csrf=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/')
    onUnauthorized(null)
    vi.unstubAllGlobals()
  })

  it('reads cookies', () => {
    expect(readCookie('naboom_csrf')).toBe('tok-en')
    expect(readCookie('missing')).toBeNull()
  })

  it('sends the CSRF header on unsafe methods only, with cookie credentials and JSON', async () => {
    const { calls, fn } = mockFetch({
      'GET /api/things': { body: { ok: 1 } },
      'POST /api/things': { status: 201, body: { id: 'x' } },
      'PATCH /api/things/x': { body: { id: 'x' } },
      'DELETE /api/things/x': { status: 204 },
    })
    expect(await api.get('/api/things')).toEqual({ ok: 1 })
    expect(await api.post('/api/things', { a: 1 })).toEqual({ id: 'x' })
    await api.patch('/api/things/x', { b: 2 })
    expect(await api.del('/api/things/x')).toBeUndefined()
    expect(calls[0]!.headers[CSRF_HEADER]).toBeUndefined()
    expect(calls[1]!.headers[CSRF_HEADER]).toBe('tok-en')
    expect(calls[1]!.headers['Content-Type']).toBe('application/json')
    expect(calls[1]!.body).toEqual({ a: 1 })
    expect(calls[2]!.headers[CSRF_HEADER]).toBe('tok-en')
    expect(calls[3]!.headers[CSRF_HEADER]).toBe('tok-en')
    for (const call of fn.mock.calls) expect(call[1]?.credentials).toBe('same-origin')
  })

  it('builds query strings, repeating arrays and leaving out empty values', () => {
    expect(buildUrl('/api/incidents', { status: ['open', 'acknowledged'], limit: 5, region: undefined, q: '', x: null, on: true })).toBe(
      '/api/incidents?status=open&status=acknowledged&limit=5&on=true',
    )
    expect(buildUrl('/a', {})).toBe('/a')
  })

  it('turns problem details into ApiError with the detail as message', async () => {
    mockFetch({ 'POST /api/incidents/1/resolve': { status: 409, body: { status: 409, title: 'Conflict', detail: 'incident is open (acknowledge it first)' } } })
    const err = await api.post('/api/incidents/1/resolve').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).status).toBe(409)
    expect((err as ApiError).message).toBe('incident is open (acknowledge it first)')
    expect((err as ApiError).problem?.title).toBe('Conflict')
  })

  it('falls back to the title, then to the status, when there is no detail', async () => {
    mockFetch({ 'GET /a': { status: 403, body: { title: 'Forbidden' } }, 'GET /b': { status: 500 } })
    await expect(api.get('/a')).rejects.toThrow('Forbidden')
    await expect(api.get('/b')).rejects.toThrow('HTTP 500')
  })

  it('tells the session about a 401, except for a refused login', async () => {
    const handler = vi.fn()
    onUnauthorized(handler)
    mockFetch({
      'GET /api/incidents': { status: 401, body: { status: 401, detail: 'session expired' } },
      'POST /api/auth/login': { status: 401, body: { status: 401, detail: 'wrong username or password' } },
    })
    await expect(api.get('/api/incidents')).rejects.toThrow('session expired')
    expect(handler).toHaveBeenCalledWith('/api/incidents')
    await expect(api.post('/api/auth/login', { username: 'a', password: 'b' })).rejects.toThrow('wrong username or password')
    expect(handler).toHaveBeenCalledTimes(1)
  })

  it('reports an unreachable server as status 0', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))))
    const err = (await api.get('/api/x').catch((e: unknown) => e)) as ApiError
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(0)
  })
})
