import { defineStore } from 'pinia'
import { computed, reactive, ref } from 'vue'
import { api, ApiError } from '@/api/client'
import type { IncidentEvent, LiveEvent, SmsFailedEvent, User, VehiclePositionEvent } from '@/api/types'
import { LIVE_EVENT_TYPES } from '@/api/types'
import { SseSource } from '@/api/sse'
import { useAlarm } from '@/stores/alarm'
import { useIncidents } from '@/stores/incidents'
import { useVehicles } from '@/stores/vehicles'

/**
 * The live feed: one EventSource per region, reconnected with exponential backoff and jitter,
 * resumed from the last event id, and followed by a re-sync of the lists from the REST API
 * after every (re)connection and every `stream.reset` — so nothing is missed silently. There is
 * no polling while the feed is up.
 */

export type FeedState = 'live' | 'reconnecting' | 'offline'
export type RegionStatus = 'connecting' | 'open' | 'waiting'

/** What the store needs of an EventSource (the tests pass a fake). */
export interface EventSourceLike {
  readonly readyState: number
  /** HTTP status of a refused stream, where known (401: the session ran out). */
  readonly status?: number
  onopen: ((this: EventSource, ev: Event) => unknown) | null
  onerror: ((this: EventSource, ev: Event) => unknown) | null
  addEventListener(type: string, listener: (ev: MessageEvent) => void): void
  close(): void
}

export interface FeedOptions {
  /** Opens one stream; `lastEventId` is in the URL too (`?lastEventId=`), for sources that cannot set headers. */
  createSource: (url: string, lastEventId: string | null) => EventSourceLike
  random: () => number
  baseDelayMs: number
  maxDelayMs: number
  /** A connection that stayed up this long starts the backoff from the beginning again. */
  stableMs: number
}

const defaults: FeedOptions = {
  // SSE over fetch (see api/sse.ts): it sees the heartbeats, so a silently dead link is noticed.
  createSource: (url, lastEventId) => new SseSource(url, { lastEventId }),
  random: Math.random,
  baseDelayMs: 1000,
  maxDelayMs: 30_000,
  stableMs: 10_000,
}

/** Exponential backoff with "equal jitter": half the delay fixed, half random, capped. */
export function backoffDelay(attempt: number, opts: Pick<FeedOptions, 'baseDelayMs' | 'maxDelayMs' | 'random'>): number {
  const exp = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.max(0, attempt))
  return Math.round(exp / 2 + (exp / 2) * opts.random())
}

export function streamUrl(region: string, lastEventId: string | null): string {
  let url = `/panic/api/stream?region=${encodeURIComponent(region)}`
  if (lastEventId) url += `&lastEventId=${encodeURIComponent(lastEventId)}`
  return url
}

interface Connection {
  region: string
  source: EventSourceLike | null
  lastEventId: string | null
  attempt: number
  openedAt: number | null
  timer: ReturnType<typeof setTimeout> | null
  /** Set when the connection was lost: the next open re-syncs the lists. */
  lost: boolean
}

export const useFeed = defineStore('feed', () => {
  let options: FeedOptions = { ...defaults }
  const connections = new Map<string, Connection>()
  /** Public, reactive view of each region's connection. */
  const regions = reactive<Record<string, RegionStatus>>({})
  const online = ref(typeof navigator === 'undefined' ? true : navigator.onLine !== false)
  const running = ref(false)
  /** When the feed stopped being live (null while live). */
  const downSince = ref<number | null>(null)
  const lastEventAt = ref<number | null>(null)
  const lastError = ref<string | null>(null)
  const syncing = ref(false)
  let listenersInstalled = false

  const state = computed<FeedState>(() => {
    if (!online.value) return 'offline'
    const codes = Object.keys(regions)
    if (running.value && codes.length > 0 && codes.every((c) => regions[c] === 'open')) return 'live'
    return 'reconnecting'
  })

  function configure(partial: Partial<FeedOptions>): void {
    options = { ...options, ...partial }
  }

  function markState(): void {
    if (state.value === 'live') downSince.value = null
    else if (downSince.value === null) downSince.value = Date.now()
  }

  /** Watch exactly these regions (opening and closing streams as needed). */
  function start(codes: string[]): void {
    installWindowListeners()
    running.value = true
    const wanted = new Set(codes)
    for (const region of [...connections.keys()]) if (!wanted.has(region)) drop(region)
    for (const region of wanted) {
      if (!connections.has(region)) {
        connections.set(region, { region, source: null, lastEventId: null, attempt: 0, openedAt: null, timer: null, lost: false })
        regions[region] = 'connecting'
        connect(region)
      }
    }
    markState()
  }

  function stop(): void {
    for (const region of [...connections.keys()]) drop(region)
    running.value = false
    downSince.value = null
  }

  function drop(region: string): void {
    const conn = connections.get(region)
    if (!conn) return
    if (conn.timer !== null) clearTimeout(conn.timer)
    conn.timer = null
    conn.source?.close()
    conn.source = null
    connections.delete(region)
    delete regions[region]
  }

  function connect(region: string): void {
    const conn = connections.get(region)
    if (!conn) return
    conn.timer = null
    if (!online.value) {
      regions[region] = 'waiting'
      markState()
      return
    }
    regions[region] = 'connecting'
    const source = options.createSource(streamUrl(region, conn.lastEventId), conn.lastEventId)
    conn.source = source
    source.onopen = () => {
      if (conn.source !== source) return
      conn.openedAt = Date.now()
      regions[region] = 'open'
      lastError.value = null
      markState()
      // First open and every reopen: the REST lists are the truth; events fill in from here.
      void resync()
    }
    source.onerror = () => {
      if (conn.source !== source) return
      lostConnection(conn)
    }
    for (const type of LIVE_EVENT_TYPES) {
      source.addEventListener(type, (ev: MessageEvent) => {
        if (conn.source !== source) return
        if (ev.lastEventId) conn.lastEventId = ev.lastEventId
        handle(type, ev.data)
      })
    }
  }

  function lostConnection(conn: Connection): void {
    // Our own reconnect (not the browser's): it keeps the backoff and the resume id in our hands.
    // undefined: a source that cannot tell (a plain EventSource); 0: network error, no answer.
    const refusedStatus = conn.source?.status
    conn.source?.close()
    conn.source = null
    const wasStable = conn.openedAt !== null && Date.now() - conn.openedAt >= options.stableMs
    const neverOpened = conn.openedAt === null
    if (wasStable) conn.attempt = 0
    conn.openedAt = null
    conn.lost = true
    regions[conn.region] = 'waiting'
    markState()
    const delay = backoffDelay(conn.attempt, options)
    conn.attempt += 1
    if (conn.timer !== null) clearTimeout(conn.timer)
    conn.timer = setTimeout(() => connect(conn.region), delay)
    // A stream that keeps failing before it opens may be a session that ran out: /me tells
    // (its 401 brings the login back); an unreachable server just keeps us reconnecting.
    if (refusedStatus === 401 || (refusedStatus === undefined && neverOpened && conn.attempt >= 2)) void probeSession()
  }

  let probing = false
  async function probeSession(): Promise<void> {
    if (probing) return
    probing = true
    try {
      await api.get<User>('/api/auth/me')
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) stop()
    } finally {
      probing = false
    }
  }

  function handle(type: string, data: string): void {
    let event: LiveEvent
    try {
      event = { ...(JSON.parse(data) as object), type } as LiveEvent
    } catch {
      return
    }
    lastEventAt.value = Date.now()
    const incidents = useIncidents()
    const alarm = useAlarm()
    switch (event.type) {
      case 'incident.created':
      case 'incident.updated': {
        const ev = event as IncidentEvent
        const { incident, isNew, previous } = incidents.applyEvent(ev)
        vehicleAvailability(ev, previous?.vehicle_id ?? null)
        if (isNew && incident.status === 'open') alarm.sos(incident)
        else if (ev.change?.type === 'sos' && incident.status !== 'resolved' && incident.status !== 'cancelled') alarm.sos(incident, true)
        break
      }
      case 'vehicle.position':
        useVehicles().applyPosition(event as VehiclePositionEvent)
        break
      case 'sms.failed':
        alarm.smsFailed(event as SmsFailedEvent)
        break
      case 'stream.reset':
        void resync()
        break
    }
  }

  function vehicleAvailability(ev: IncidentEvent, previousVehicle: string | null): void {
    const vehicles = useVehicles()
    const set = (id: unknown, available: boolean) => {
      if (typeof id === 'string' && vehicles.byId[id]) vehicles.byId[id] = { ...vehicles.byId[id], available }
    }
    if (ev.change?.type === 'dispatched') {
      set(ev.change.payload.vehicle_id, false)
      set(ev.change.payload.previous_vehicle_id, true)
    } else if (ev.status === 'resolved' || ev.status === 'cancelled') {
      set(ev.change?.payload.vehicle_id ?? previousVehicle ?? ev.vehicle_id, true)
    }
  }

  /** Reload the incident and vehicle lists; new open incidents found this way raise the alarm too. */
  async function resync(): Promise<void> {
    const incidents = useIncidents()
    syncing.value = true
    try {
      const [added] = await Promise.all([incidents.resync(), useVehicles().load().catch(() => undefined)])
      const alarm = useAlarm()
      for (const incident of added) if (incident.status === 'open') alarm.sos(incident)
    } catch (err) {
      lastError.value = err instanceof Error ? err.message : String(err)
    } finally {
      syncing.value = false
    }
  }

  function setOnline(value: boolean): void {
    online.value = value
    if (value) {
      // Back online: try every region now instead of waiting out the backoff.
      for (const conn of connections.values()) {
        if (conn.source === null) {
          if (conn.timer !== null) clearTimeout(conn.timer)
          conn.attempt = 0
          connect(conn.region)
        }
      }
    }
    markState()
  }

  function installWindowListeners(): void {
    if (listenersInstalled || typeof window === 'undefined') return
    listenersInstalled = true
    window.addEventListener('online', () => setOnline(true))
    window.addEventListener('offline', () => setOnline(false))
  }

  /** For the tests: the current connection of a region. */
  function _connection(region: string): Readonly<Connection> | undefined {
    return connections.get(region)
  }

  return { regions, online, running, state, downSince, lastEventAt, lastError, syncing, configure, start, stop, resync, setOnline, _connection }
})
