import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory, createRouter } from 'vue-router'
import LoginView from '@/views/LoginView.vue'
import { mockFetch } from '@/test/fetchMock'

async function setup(start: string) {
  const Stub = { template: '<div />' }
  const router = createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: '/login', name: 'login', component: LoginView },
      { path: '/', name: 'monitor', component: Stub },
      { path: '/incidents/:id', name: 'incident', component: Stub },
    ],
  })
  await router.push(start)
  const w = mount(LoginView, { global: { plugins: [router] } })
  return { w, router }
}

describe('LoginView', () => {
  beforeEach(() => setActivePinia(createPinia()))
  afterEach(() => vi.unstubAllGlobals())

  it('shows the problem detail of a refused login', async () => {
    mockFetch({ 'POST /api/auth/login': { status: 401, body: { status: 401, detail: 'wrong username or password' } } })
    const { w } = await setup('/login')
    await w.get('[data-testid="login-username"]').setValue('demo')
    await w.get('[data-testid="login-password"]').setValue('nope')
    await w.get('form').trigger('submit')
    await flushPromises()
    expect(w.get('[data-testid="login-error"]').text()).toBe('wrong username or password')
    expect((w.get('[data-testid="login-password"]').element as HTMLInputElement).value).toBe('')
  })

  it('returns to the route the operator was on', async () => {
    mockFetch({ 'POST /api/auth/login': { body: { username: 'demo', role: 'operator', regions: ['ZA-LP'], token: 't', csrf_token: 'c', expires_in: 1, expires_at: 'x' } } })
    const { w, router } = await setup('/login?redirect=/incidents/abc')
    await w.get('[data-testid="login-username"]').setValue('demo')
    await w.get('[data-testid="login-password"]').setValue('pw')
    await w.get('form').trigger('submit')
    await flushPromises()
    expect(router.currentRoute.value.path).toBe('/incidents/abc')
  })
})
