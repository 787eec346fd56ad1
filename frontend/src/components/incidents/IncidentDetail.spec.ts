import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory, createRouter } from 'vue-router'
import IncidentDetail from '@/components/incidents/IncidentDetail.vue'
import { useSession } from '@/stores/session'
import { incident } from '@/test/factories'
import { mockFetch } from '@/test/fetchMock'

const detail = {
  ...incident({ id: 'i1' }),
  timeline: [
    { id: 1, type: 'sos', actor: 'device:d', at: '2026-01-01T00:00:00Z', payload: { transport: 'mqtt' } },
    { id: 2, type: 'note', actor: 'op', at: '2026-01-01T00:01:00Z', payload: { text: 'calling' } },
  ],
  nearest_vehicles: [{ id: 'v1', callsign: 'Alpha', lat: -24, lng: 28, distance_m: 1500, last_ping_at: null }],
}

async function mountAs(role: 'operator' | 'viewer') {
  const Stub = { template: '<div />' }
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/', name: 'monitor', component: Stub }] })
  useSession().user = { username: 'u', role, regions: ['ZA-LP'] }
  const w = mount(IncidentDetail, { props: { id: 'i1' }, global: { plugins: [router] } })
  await flushPromises()
  return w
}

describe('IncidentDetail', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    mockFetch({ 'GET /api/incidents/i1': { body: detail } })
  })
  afterEach(() => vi.unstubAllGlobals())

  it('shows status, timeline (newest first) and the actions the lifecycle allows', async () => {
    const w = await mountAs('operator')
    expect(w.get('[data-testid="incident-detail"]').attributes('data-incident-id')).toBe('i1')
    expect(w.get('[data-testid="incident-status"]').text()).toContain('Unacknowledged')
    const entries = w.findAll('[data-testid="timeline-entry"]')
    expect(entries.map((e) => e.attributes('data-type'))).toEqual(['note', 'sos'])
    expect(entries[0]!.text()).toContain('op: calling')
    expect(w.find('[data-testid="action-acknowledge"]').exists()).toBe(true)
    expect(w.find('[data-testid="action-dispatch"]').exists()).toBe(true)
    expect(w.find('[data-testid="action-cancel"]').exists()).toBe(true)
    expect(w.find('[data-testid="action-resolve"]').exists()).toBe(false)
    expect(w.get('[data-testid="dispatch-vehicle"]').text()).toContain('Alpha — 1.5 km')
    expect(w.find('[data-testid="note-input"]').exists()).toBe(true)
  })

  it('viewers see no actions', async () => {
    const w = await mountAs('viewer')
    for (const id of ['action-acknowledge', 'action-dispatch', 'action-resolve', 'action-cancel', 'note-input', 'note-submit']) {
      expect(w.find(`[data-testid="${id}"]`).exists()).toBe(false)
    }
    expect(w.text()).toContain('View only')
  })
})
