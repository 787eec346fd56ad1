import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory, createRouter } from 'vue-router'
import { onUnauthorized } from '@/api/client'
import { guard, installSessionExpiry } from '@/router'
import { safeRedirect } from '@/router/redirect'
import { useSession } from '@/stores/session'
import { mockFetch } from '@/test/fetchMock'

const Stub = { template: '<div />' }

function makeRouter() {
  const router = createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: '/login', name: 'login', component: Stub, meta: { public: true } },
      { path: '/', name: 'monitor', component: Stub },
      { path: '/incidents/:id', name: 'incident', component: Stub },
      { path: '/admin', component: Stub, meta: { admin: true }, children: [{ path: 'devices', component: Stub }] },
    ],
  })
  router.beforeEach((to) => guard(to))
  return router
}

describe('router guard', () => {
  beforeEach(() => setActivePinia(createPinia()))
  afterEach(() => {
    onUnauthorized(null)
    vi.unstubAllGlobals()
  })

  it('sends a signed-out user to the login, remembering the route', async () => {
    mockFetch({ 'GET /api/auth/me': { status: 401, body: { detail: 'no session' } } })
    const router = makeRouter()
    await router.push('/incidents/abc')
    expect(router.currentRoute.value.name).toBe('login')
    expect(router.currentRoute.value.query.redirect).toBe('/incidents/abc')
  })

  it('keeps non-admins out of /admin', async () => {
    mockFetch({ 'GET /api/auth/me': { body: { username: 'op', role: 'operator', regions: [] } } })
    const router = makeRouter()
    await router.push('/admin/devices')
    expect(router.currentRoute.value.name).toBe('monitor')
  })

  it('lets admins into /admin', async () => {
    mockFetch({ 'GET /api/auth/me': { body: { username: 'ad', role: 'admin', regions: [] } } })
    const router = makeRouter()
    await router.push('/admin/devices')
    expect(router.currentRoute.value.path).toBe('/admin/devices')
  })

  it('a signed-in user at /login goes on to the remembered route', async () => {
    mockFetch({ 'GET /api/auth/me': { body: { username: 'op', role: 'operator', regions: [] } } })
    const router = makeRouter()
    await router.push('/login?redirect=/incidents/x')
    expect(router.currentRoute.value.path).toBe('/incidents/x')
  })

  it('a 401 anywhere brings the login back and keeps the place to return to', async () => {
    const { fn } = mockFetch({ 'GET /api/auth/me': { body: { username: 'op', role: 'operator', regions: [] } } })
    const router = makeRouter()
    installSessionExpiry(router)
    await router.push('/incidents/abc?tab=1')
    expect(router.currentRoute.value.name).toBe('incident')
    fn.mockImplementation(async () => new Response(JSON.stringify({ detail: 'session expired' }), { status: 401 }))
    const { api } = await import('@/api/client')
    await api.get('/api/incidents').catch(() => undefined)
    await vi.waitFor(() => expect(router.currentRoute.value.name).toBe('login'))
    expect(router.currentRoute.value.query.redirect).toBe('/incidents/abc?tab=1')
    expect(useSession().expired).toBe(true)
  })
})

describe('safeRedirect', () => {
  it('allows app paths only', () => {
    expect(safeRedirect('/incidents/1')).toBe('/incidents/1')
    expect(safeRedirect(['/admin/users'])).toBe('/admin/users')
    expect(safeRedirect('//evil.example/x')).toBe('/')
    expect(safeRedirect('https://evil.example')).toBe('/')
    expect(safeRedirect('/\\evil')).toBe('/')
    expect(safeRedirect('/login?redirect=/x')).toBe('/')
    expect(safeRedirect(undefined)).toBe('/')
  })
})
