import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { effectScope, ref } from 'vue'
import type { IncidentDetail } from '@/api/types'
import { useIncidentDetail } from '@/composables/useIncidentDetail'
import { useIncidents } from '@/stores/incidents'
import { incident, incidentEvent } from '@/test/factories'
import { flush, mockFetch } from '@/test/fetchMock'

function detail(over: Partial<IncidentDetail> = {}): IncidentDetail {
  return {
    ...incident({ id: 'i1' }),
    timeline: [{ id: 1, type: 'sos', actor: 'device:d', at: '2026-01-01T00:00:00Z', payload: {} }],
    nearest_vehicles: [{ id: 'v1', callsign: 'Alpha', lat: -24, lng: 28, distance_m: 1200, last_ping_at: null }],
    ...over,
  }
}

describe('useIncidentDetail', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    document.cookie = 'naboom_csrf=c; path=/'
  })
  afterEach(() => vi.unstubAllGlobals())

  it('loads the incident with its timeline and nearest vehicles', async () => {
    mockFetch({ 'GET /api/incidents/i1': { body: detail() } })
    const scope = effectScope()
    const d = scope.run(() => useIncidentDetail(ref('i1')))!
    await flush()
    expect(d.incident.value?.timeline).toHaveLength(1)
    expect(d.detail.value?.nearest_vehicles[0]!.callsign).toBe('Alpha')
    scope.stop()
  })

  it('a live change by another operator shows at once and refreshes the timeline', async () => {
    vi.useFakeTimers()
    let status: 'open' | 'acknowledged' = 'open'
    const { calls } = mockFetch({ 'GET /api/incidents/i1': () => ({ body: detail({ status }) }) })
    const scope = effectScope()
    const d = scope.run(() => useIncidentDetail(ref('i1'), 300))!
    await flush()
    expect(d.incident.value?.status).toBe('open')
    status = 'acknowledged'
    useIncidents().applyEvent(incidentEvent('incident.updated', incident({ id: 'i1', status: 'acknowledged' })))
    await flush()
    expect(d.incident.value?.status).toBe('acknowledged')
    expect(calls).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(300)
    await flush()
    expect(calls).toHaveLength(2)
    scope.stop()
    vi.useRealTimers()
  })

  it('acknowledge posts with the CSRF header and updates the store', async () => {
    const { calls } = mockFetch({
      'GET /api/incidents/i1': { body: detail() },
      'POST /api/incidents/i1/acknowledge': { body: incident({ id: 'i1', status: 'acknowledged' }) },
    })
    const scope = effectScope()
    const d = scope.run(() => useIncidentDetail(ref('i1')))!
    await flush()
    expect(await d.acknowledge('on my way')).toBe(true)
    const post = calls.find((c) => c.method === 'POST')!
    expect(post.body).toEqual({ note: 'on my way' })
    expect(post.headers['X-CSRF-Token']).toBe('c')
    expect(useIncidents().get('i1')?.status).toBe('acknowledged')
    scope.stop()
  })

  it('dispatch sends the chosen vehicle; a conflict shows the problem detail', async () => {
    const { calls } = mockFetch({
      'GET /api/incidents/i1': { body: detail() },
      'POST /api/incidents/i1/dispatch': { status: 409, body: { status: 409, detail: 'vehicle Alpha is not available (assigned elsewhere or off duty)' } },
    })
    const scope = effectScope()
    const d = scope.run(() => useIncidentDetail(ref('i1')))!
    await flush()
    expect(await d.dispatch('v1')).toBe(false)
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ vehicle_id: 'v1' })
    expect(d.actionError.value).toBe('vehicle Alpha is not available (assigned elsewhere or off duty)')
    scope.stop()
  })

  it('notes are posted as text', async () => {
    const { calls } = mockFetch({
      'GET /api/incidents/i1': { body: detail() },
      'POST /api/incidents/i1/notes': { status: 201, body: { id: 2, type: 'note', actor: 'demo', at: 'x', payload: { text: 'hi' } } },
    })
    const scope = effectScope()
    const d = scope.run(() => useIncidentDetail(ref('i1')))!
    await flush()
    expect(await d.addNote('  hi  ')).toBe(true)
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ text: 'hi' })
    scope.stop()
  })

  it('an unknown incident is reported as not found', async () => {
    mockFetch({ 'GET /api/incidents/nope': { status: 404, body: { status: 404, detail: 'no incident nope' } } })
    const scope = effectScope()
    const d = scope.run(() => useIncidentDetail(ref('nope')))!
    await flush()
    expect(d.notFound.value).toBe(true)
    expect(d.incident.value).toBeNull()
    scope.stop()
  })
})
