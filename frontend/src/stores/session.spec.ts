import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { useSession } from '@/stores/session'
import { mockFetch } from '@/test/fetchMock'

const me = { id: 'u1', username: 'demo', role: 'operator', regions: ['ZA-LP'] }

describe('session store', () => {
  beforeEach(() => setActivePinia(createPinia()))
  afterEach(() => vi.unstubAllGlobals())

  it('logs in and exposes the role getters', async () => {
    const { calls } = mockFetch({ 'POST /api/auth/login': { body: { ...me, token: 't', csrf_token: 'c', expires_in: 1, expires_at: 'x' } } })
    const s = useSession()
    await s.login('demo', 'pw')
    expect(calls[0]!.body).toEqual({ username: 'demo', password: 'pw' })
    expect(s.user).toEqual({ id: 'u1', username: 'demo', role: 'operator', regions: ['ZA-LP'] })
    expect(s.canAct).toBe(true)
    expect(s.isAdmin).toBe(false)
    expect(s.loaded).toBe(true)
  })

  it('viewers cannot act; admins are admins', async () => {
    const s = useSession()
    mockFetch({ 'GET /api/auth/me': { body: { ...me, role: 'viewer' } } })
    await s.load()
    expect(s.canAct).toBe(false)
    mockFetch({ 'GET /api/auth/me': { body: { ...me, role: 'admin' } } })
    await s.load()
    expect(s.isAdmin).toBe(true)
    expect(s.canAct).toBe(true)
  })

  it('load() without a session leaves nobody signed in', async () => {
    mockFetch({ 'GET /api/auth/me': { status: 401, body: { status: 401, detail: 'not signed in' } } })
    const s = useSession()
    expect(await s.load()).toBeNull()
    expect(s.user).toBeNull()
    expect(s.loaded).toBe(true)
  })

  it('keeps the user when the server is merely unreachable', async () => {
    const s = useSession()
    mockFetch({ 'GET /api/auth/me': { body: me } })
    await s.load()
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('down'))))
    await s.load()
    expect(s.user?.username).toBe('demo')
  })

  it('a failed login says why and signs nobody in', async () => {
    mockFetch({ 'POST /api/auth/login': { status: 401, body: { status: 401, detail: 'wrong username or password' } } })
    const s = useSession()
    await expect(s.login('demo', 'bad')).rejects.toThrow('wrong username or password')
    expect(s.user).toBeNull()
  })

  it('expire() marks an expired session; logout() forgets it even if the server call fails', async () => {
    mockFetch({ 'GET /api/auth/me': { body: me }, 'POST /api/auth/logout': { status: 500 } })
    const s = useSession()
    await s.load()
    s.expire()
    expect(s.user).toBeNull()
    expect(s.expired).toBe(true)
    await s.load()
    await s.logout()
    expect(s.user).toBeNull()
    expect(s.expired).toBe(false)
  })

  it('expire() with nobody signed in is not an "expired session"', () => {
    const s = useSession()
    s.expire()
    expect(s.expired).toBe(false)
  })
})
