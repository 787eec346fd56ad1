import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Incident } from '@/api/types'
import { useAlarm } from '@/stores/alarm'
import { backoffDelay, streamUrl, useFeed } from '@/stores/feed'
import { useIncidents } from '@/stores/incidents'
import { useVehicles } from '@/stores/vehicles'
import { incident } from '@/test/factories'
import { FakeEventSource } from '@/test/fakeEventSource'
import { flush, mockFetch } from '@/test/fetchMock'

let listed: Incident[] = []

function setup(random = 0.5) {
  setActivePinia(createPinia())
  FakeEventSource.reset()
  const api = mockFetch({
    'GET /api/incidents': (req) => ({ body: { items: req.url.includes('status=resolved') ? [] : listed, total: 0, limit: 500, offset: 0 } }),
    'GET /api/vehicles': { body: { items: [], total: 0, limit: 500, offset: 0 } },
    'GET /api/auth/me': { body: { username: 'demo', role: 'operator', regions: ['ZA-LP'] } },
  })
  const feed = useFeed()
  feed.configure({ createSource: (url) => new FakeEventSource(url), random: () => random, baseDelayMs: 1000, maxDelayMs: 30_000, stableMs: 10_000 })
  return { feed, api }
}

function incidentCalls(calls: { url: string }[]): number {
  return calls.filter((c) => c.url.startsWith('/api/incidents?status=open')).length
}

describe('backoff', () => {
  it('doubles up to the cap, with half of each delay random', () => {
    const opts = { baseDelayMs: 1000, maxDelayMs: 30_000 }
    expect(backoffDelay(0, { ...opts, random: () => 0 })).toBe(500)
    expect(backoffDelay(0, { ...opts, random: () => 1 })).toBe(1000)
    expect(backoffDelay(3, { ...opts, random: () => 0 })).toBe(4000)
    expect(backoffDelay(3, { ...opts, random: () => 0.999999 })).toBe(8000)
    expect(backoffDelay(20, { ...opts, random: () => 1 })).toBe(30_000)
    expect(backoffDelay(20, { ...opts, random: () => 0 })).toBe(15_000)
  })

  it('builds the stream URL with the resume id', () => {
    expect(streamUrl('ZA-LP', null)).toBe('/panic/api/stream?region=ZA-LP')
    expect(streamUrl('ZA LP', '42')).toBe('/panic/api/stream?region=ZA%20LP&lastEventId=42')
  })
})

describe('live feed store', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    listed = []
  })
  afterEach(() => {
    useFeed().stop()
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })

  it('opens one stream per region and is live once all are open', async () => {
    const { feed } = setup()
    feed.start(['ZA-LP', 'ZA-GP'])
    expect(FakeEventSource.instances.map((s) => s.url)).toEqual([
      '/panic/api/stream?region=ZA-LP',
      '/panic/api/stream?region=ZA-GP',
    ])
    expect(feed.state).toBe('reconnecting')
    FakeEventSource.forRegion('ZA-LP')[0]!.open()
    expect(feed.state).toBe('reconnecting')
    FakeEventSource.forRegion('ZA-GP')[0]!.open()
    expect(feed.state).toBe('live')
    expect(feed.downSince).toBeNull()
  })

  it('loads the lists from the API after the stream opens, and does not poll while live', async () => {
    listed = [incident({ id: 'a' })]
    const { feed, api } = setup()
    feed.start(['ZA-LP'])
    expect(incidentCalls(api.calls)).toBe(0)
    FakeEventSource.last().open()
    await flush()
    expect(incidentCalls(api.calls)).toBe(1)
    expect(useIncidents().get('a')).toBeDefined()
    await vi.advanceTimersByTimeAsync(10 * 60_000)
    expect(incidentCalls(api.calls)).toBe(1)
    expect(feed.state).toBe('live')
  })

  it('applies live events and remembers the last event id', async () => {
    const { feed } = setup()
    feed.start(['ZA-LP'])
    const es = FakeEventSource.last()
    es.open()
    await flush()
    es.emit('incident.created', { ...incident({ id: 'n1' }), event_id: 7 }, 7)
    expect(useIncidents().get('n1')?.status).toBe('open')
    expect(feed._connection('ZA-LP')?.lastEventId).toBe('7')
    es.emit('incident.updated', { ...incident({ id: 'n1', status: 'acknowledged' }), change: { type: 'acknowledged', actor: 'op2', at: 'x', payload: {} } }, 8)
    expect(useIncidents().get('n1')?.status).toBe('acknowledged')
    es.emit('vehicle.position', { id: 'v1', callsign: 'Alpha', region: 'ZA-LP', lat: -24, lng: 28, speed: 10, heading: 90, ts: '2026-01-01T00:00:00Z' }, 9)
    expect(useVehicles().byId.v1?.heading).toBe(90)
    expect(feed._connection('ZA-LP')?.lastEventId).toBe('9')
  })

  it('a new SOS raises a toast and asks the map to fly there', async () => {
    const { feed } = setup()
    feed.start(['ZA-LP'])
    FakeEventSource.last().open()
    await flush()
    FakeEventSource.last().emit('incident.created', incident({ id: 'sos1' }), 1)
    const alarm = useAlarm()
    expect(alarm.toasts.map((t) => t.incidentId)).toEqual(['sos1'])
    expect(useIncidents().focus?.id).toBe('sos1')
    expect(alarm.ringing).toBe(true)
  })

  it('reconnects with backoff and jitter, resuming from the last event id, then re-syncs', async () => {
    const { feed, api } = setup(0.5)
    feed.start(['ZA-LP'])
    const first = FakeEventSource.last()
    first.open()
    await flush()
    first.emit('incident.created', incident({ id: 'a' }), 41)
    first.emit('incident.updated', incident({ id: 'a', status: 'acknowledged' }), 42)
    const before = incidentCalls(api.calls)

    first.fail()
    expect(first.closed).toBe(true)
    expect(feed.state).toBe('reconnecting')
    expect(feed.downSince).not.toBeNull()
    // attempt 0: 500 + 500 * 0.5 = 750 ms
    await vi.advanceTimersByTimeAsync(749)
    expect(FakeEventSource.instances).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    const second = FakeEventSource.last()
    expect(second.url).toBe('/panic/api/stream?region=ZA-LP&lastEventId=42')

    // Fails again before opening: attempt 1 waits 1000 + 1000 * 0.5 = 1500 ms.
    second.fail()
    await vi.advanceTimersByTimeAsync(1499)
    expect(FakeEventSource.instances).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(1)
    const third = FakeEventSource.last()
    expect(third.url).toBe('/panic/api/stream?region=ZA-LP&lastEventId=42')

    // Missed events are replayed on the new stream; the lists are re-synced as well.
    listed = [incident({ id: 'a', status: 'acknowledged' }), incident({ id: 'missed' })]
    third.open()
    expect(feed.state).toBe('live')
    third.emit('incident.created', incident({ id: 'replayed' }), 43)
    await flush()
    expect(incidentCalls(api.calls)).toBe(before + 1)
    expect(useIncidents().get('missed')).toBeDefined()
    expect(useIncidents().get('replayed')).toBeDefined()
  })

  it('the backoff keeps growing while the server is down, and starts over after a stable connection', async () => {
    const { feed } = setup(1)
    feed.start(['ZA-LP'])
    const delays: number[] = []
    for (let i = 0; i < 7; i++) {
      const count = FakeEventSource.instances.length
      FakeEventSource.last().fail()
      let waited = 0
      while (FakeEventSource.instances.length === count) {
        await vi.advanceTimersByTimeAsync(100)
        waited += 100
      }
      delays.push(waited)
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000])
    // Now it opens and stays up for a while: the next loss starts from the short delay again.
    FakeEventSource.last().open()
    await vi.advanceTimersByTimeAsync(15_000)
    const count = FakeEventSource.instances.length
    FakeEventSource.last().fail()
    await vi.advanceTimersByTimeAsync(1000)
    expect(FakeEventSource.instances.length).toBe(count + 1)
    expect(feed.state).toBe('reconnecting')
  })

  it('a stream.reset re-syncs the lists', async () => {
    const { feed, api } = setup()
    feed.start(['ZA-LP'])
    FakeEventSource.last().open()
    await flush()
    const before = incidentCalls(api.calls)
    listed = [incident({ id: 'lost' })]
    FakeEventSource.last().emit('stream.reset', { type: 'stream.reset', detail: 'events were missed' })
    await flush()
    expect(incidentCalls(api.calls)).toBe(before + 1)
    expect(useIncidents().get('lost')).toBeDefined()
  })

  it('an SOS found only by a re-sync (missed while down) still raises the alarm', async () => {
    const { feed } = setup()
    feed.start(['ZA-LP'])
    FakeEventSource.last().open()
    await flush()
    FakeEventSource.last().fail()
    await vi.advanceTimersByTimeAsync(1000)
    listed = [incident({ id: 'while-down' })]
    FakeEventSource.last().open()
    await flush()
    expect(useAlarm().toasts.map((t) => t.incidentId)).toEqual(['while-down'])
  })

  it('offline is shown as offline; coming back online reconnects at once', async () => {
    const { feed } = setup()
    feed.start(['ZA-LP'])
    FakeEventSource.last().open()
    feed.setOnline(false)
    expect(feed.state).toBe('offline')
    FakeEventSource.last().fail()
    // While offline nothing is attempted.
    await vi.advanceTimersByTimeAsync(60_000)
    expect(FakeEventSource.instances).toHaveLength(1)
    feed.setOnline(true)
    expect(FakeEventSource.instances).toHaveLength(2)
    expect(feed.state).toBe('reconnecting')
    FakeEventSource.last().open()
    expect(feed.state).toBe('live')
  })

  it('remembers since when the feed is down (for the banner)', async () => {
    const { feed } = setup()
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'))
    feed.start(['ZA-LP'])
    FakeEventSource.last().open()
    vi.setSystemTime(new Date('2026-01-01T00:01:00Z'))
    FakeEventSource.last().fail()
    expect(feed.downSince).toBe(Date.parse('2026-01-01T00:01:00Z'))
    await vi.advanceTimersByTimeAsync(5000)
    // Still the moment it went down, not the moment of the last attempt.
    expect(feed.downSince).toBe(Date.parse('2026-01-01T00:01:00Z'))
  })

  it('a stream that keeps failing before it opens checks the session', async () => {
    const { feed, api } = setup()
    feed.start(['ZA-LP'])
    FakeEventSource.last().fail()
    await vi.advanceTimersByTimeAsync(1000)
    FakeEventSource.last().fail()
    await flush()
    expect(api.calls.some((c) => c.url === '/api/auth/me')).toBe(true)
  })

  it('stop() closes every stream and cancels pending reconnects; events of a closed stream are ignored', async () => {
    const { feed } = setup()
    feed.start(['ZA-LP', 'ZA-GP'])
    const [lp, gp] = FakeEventSource.instances
    lp!.fail()
    feed.stop()
    expect(gp!.closed).toBe(true)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(FakeEventSource.instances).toHaveLength(2)
    gp!.emit('incident.created', incident({ id: 'ghost' }), 1)
    expect(useIncidents().get('ghost')).toBeUndefined()
  })

  it('start() with other regions closes the ones no longer watched', () => {
    const { feed } = setup()
    feed.start(['ZA-LP', 'ZA-GP'])
    feed.start(['ZA-GP'])
    expect(FakeEventSource.forRegion('ZA-LP')[0]!.closed).toBe(true)
    expect(FakeEventSource.forRegion('ZA-GP')[0]!.closed).toBe(false)
    expect(Object.keys(feed.regions)).toEqual(['ZA-GP'])
  })
})

describe('live feed store and the session', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => {
    useFeed().stop()
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })

  it('a stream refused with 401 checks the session at once', async () => {
    const { feed, api } = setup()
    feed.start(['ZA-LP'])
    const es = FakeEventSource.last() as FakeEventSource & { status: number }
    es.status = 401
    es.fail()
    await flush()
    expect(api.calls.some((c) => c.url === '/api/auth/me')).toBe(true)
  })
})

describe('live feed store with an unreachable server', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => {
    useFeed().stop()
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })

  it('does not ask for the session when the server simply does not answer', async () => {
    const { feed, api } = setup()
    feed.start(['ZA-LP'])
    for (let i = 0; i < 4; i++) {
      const es = FakeEventSource.last() as FakeEventSource & { status: number }
      es.status = 0
      es.fail()
      await vi.advanceTimersByTimeAsync(30_000)
    }
    expect(api.calls.some((c) => c.url === '/api/auth/me')).toBe(false)
  })
})
