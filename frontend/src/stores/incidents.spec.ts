import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Incident } from '@/api/types'
import { compareUrgency, pickIncident, useIncidents } from '@/stores/incidents'
import { incident, incidentEvent } from '@/test/factories'
import { jsonResponse, mockFetch } from '@/test/fetchMock'

function page(items: Incident[]) {
  return { items, total: items.length, limit: 500, offset: 0 }
}

/** Answers the two list requests of a re-sync (open ones, recently closed ones). */
function snapshot(open: Incident[], closed: Incident[] = []) {
  return mockFetch({
    'GET /api/incidents': (req) => ({ body: page(req.url.includes('status=resolved') ? closed : open) }),
  })
}

describe('urgency order', () => {
  it('puts unacknowledged first, then in progress, then closed; oldest first inside a group', () => {
    const a = incident({ id: 'a', status: 'acknowledged', created_at: '2026-01-01T00:00:00Z' })
    const b = incident({ id: 'b', status: 'open', created_at: '2026-01-01T00:05:00Z' })
    const c = incident({ id: 'c', status: 'open', created_at: '2026-01-01T00:01:00Z' })
    const d = incident({ id: 'd', status: 'resolved', created_at: '2025-12-31T00:00:00Z', closed_at: '2026-01-01T00:02:00Z' })
    const e = incident({ id: 'e', status: 'dispatched', created_at: '2025-12-31T23:00:00Z' })
    const f = incident({ id: 'f', status: 'cancelled', created_at: '2025-12-31T00:00:00Z', closed_at: '2026-01-01T00:09:00Z' })
    expect([a, b, c, d, e, f].sort(compareUrgency).map((i) => i.id)).toEqual(['c', 'b', 'e', 'a', 'f', 'd'])
  })

  it('breaks ties by id so the order does not jump', () => {
    const x = incident({ id: 'x' })
    const y = incident({ id: 'y' })
    expect([y, x].sort(compareUrgency).map((i) => i.id)).toEqual(['x', 'y'])
  })
})

describe('incident store', () => {
  beforeEach(() => setActivePinia(createPinia()))
  afterEach(() => vi.unstubAllGlobals())

  it('keeps only incident fields from an event', () => {
    const ev = incidentEvent('incident.updated', incident({ id: 'a' }), { change: { type: 'note', actor: 'x', at: 'now', payload: {} } })
    const picked = pickIncident(ev) as unknown as Record<string, unknown>
    expect(picked.type).toBeUndefined()
    expect(picked.change).toBeUndefined()
    expect(picked.event_id).toBeUndefined()
    expect(picked.id).toBe('a')
  })

  it('merges live events: created adds, updated replaces, the list re-sorts', () => {
    const s = useIncidents()
    const first = s.applyEvent(incidentEvent('incident.created', incident({ id: 'a', created_at: '2026-01-01T00:00:00Z' })))
    expect(first.isNew).toBe(true)
    s.applyEvent(incidentEvent('incident.created', incident({ id: 'b', created_at: '2026-01-01T00:01:00Z' })))
    expect(s.list.map((i) => i.id)).toEqual(['a', 'b'])
    const upd = s.applyEvent(incidentEvent('incident.updated', incident({ id: 'a', status: 'acknowledged', created_at: '2026-01-01T00:00:00Z' })))
    expect(upd.isNew).toBe(false)
    expect(upd.previous?.status).toBe('open')
    expect(s.list.map((i) => i.id)).toEqual(['b', 'a'])
    expect(s.unacknowledged.map((i) => i.id)).toEqual(['b'])
    expect(s.active).toHaveLength(2)
  })

  it('an action answer never moves a status back (a live event may have overtaken it)', () => {
    const s = useIncidents()
    s.applyEvent(incidentEvent('incident.updated', incident({ id: 'a', status: 'resolved' })))
    s.upsert(incident({ id: 'a', status: 'acknowledged' }))
    expect(s.get('a')?.status).toBe('resolved')
    s.upsert(incident({ id: 'b', status: 'acknowledged' }))
    expect(s.get('b')?.status).toBe('acknowledged')
  })

  it('resync loads open and recently closed incidents; the first load announces nothing new', async () => {
    const { calls } = snapshot([incident({ id: 'a' })], [incident({ id: 'z', status: 'resolved' })])
    const s = useIncidents()
    const added = await s.resync()
    expect(added).toEqual([])
    expect(Object.keys(s.byId).sort()).toEqual(['a', 'z'])
    expect(s.loaded).toBe(true)
    expect(calls.map((c) => c.url)).toEqual([
      '/api/incidents?status=open&status=acknowledged&status=dispatched&limit=500',
      expect.stringMatching(/^\/api\/incidents\?status=resolved&status=cancelled&since=.+&limit=50$/),
    ])
  })

  it('a later resync returns the incidents it found that were missed, and drops ones gone from the lists', async () => {
    const s = useIncidents()
    snapshot([incident({ id: 'a' }), incident({ id: 'old' })])
    await s.resync()
    snapshot([incident({ id: 'a' }), incident({ id: 'missed' })])
    const added = await s.resync()
    expect(added.map((i) => i.id)).toEqual(['missed'])
    expect(Object.keys(s.byId).sort()).toEqual(['a', 'missed'])
  })

  it('a live event during a resync wins over the older snapshot', async () => {
    const s = useIncidents()
    let release: (r: Response) => void = () => undefined
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string) => {
        if (String(url).includes('status=resolved')) return jsonResponse(200, page([]))
        return new Promise<Response>((r) => {
          release = r
        })
      }),
    )
    const pending = s.resync()
    // While the request is out, another operator acknowledges "a" and a new SOS "b" arrives.
    s.applyEvent(incidentEvent('incident.updated', incident({ id: 'a', status: 'acknowledged' })))
    s.applyEvent(incidentEvent('incident.created', incident({ id: 'b' })))
    // The snapshot was read before both.
    release(jsonResponse(200, page([incident({ id: 'a', status: 'open' })])))
    await pending
    expect(s.get('a')?.status).toBe('acknowledged')
    expect(s.get('b')).toBeDefined()
  })

  it('concurrent resyncs share one request and run once more afterwards', async () => {
    const s = useIncidents()
    const { fn } = snapshot([incident({ id: 'a' })])
    await Promise.all([s.resync(), s.resync(), s.resync()])
    // one snapshot (2 requests) + one more round for the calls made meanwhile (2 requests)
    expect(fn).toHaveBeenCalledTimes(4)
  })

  it('keeps the old list and reports the error when the API fails', async () => {
    const s = useIncidents()
    snapshot([incident({ id: 'a' })])
    await s.resync()
    mockFetch({ 'GET /api/incidents': { status: 503, body: { detail: 'database unavailable' } } })
    await expect(s.resync()).rejects.toThrow('database unavailable')
    expect(s.error).toBe('database unavailable')
    expect(s.get('a')).toBeDefined()
  })

  it('requestFocus changes every time, even for the same incident', () => {
    const s = useIncidents()
    s.requestFocus('a')
    const first = s.focus
    s.requestFocus('a')
    expect(s.focus).not.toBe(first)
    expect(s.focus?.id).toBe('a')
  })
})
