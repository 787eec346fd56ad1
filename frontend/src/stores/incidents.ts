import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import { api, errorMessage } from '@/api/client'
import { CLOSED_STATUSES, OPEN_STATUSES, type Incident, type IncidentEvent, type Page } from '@/api/types'
import { isClosed, statusInfo } from '@/composables/status'

/** Closed incidents stay in the list this long (muted), so a just-resolved one does not vanish. */
export const RECENT_CLOSED_MS = 12 * 3600 * 1000
export const RECENT_CLOSED_LIMIT = 50

const INCIDENT_KEYS: (keyof Incident)[] = [
  'id', 'region', 'status', 'source', 'device', 'msg', 'lat', 'lng', 'acc', 'ts', 'created_at', 'sos_count',
  'last_sos_at', 'acknowledged_at', 'acknowledged_by', 'ack_seconds', 'dispatched_at', 'vehicle_id', 'closed_at', 'closed_by',
]

/** The incident fields of a live event or an API answer (drops `type`, `event_id`, `change`, timeline...). */
export function pickIncident(source: Incident | IncidentEvent): Incident {
  const out: Record<string, unknown> = {}
  for (const key of INCIDENT_KEYS) if (key in source) out[key] = (source as unknown as Record<string, unknown>)[key]
  return out as unknown as Incident
}

/**
 * Urgency order: unacknowledged first, then acknowledged/dispatched, then closed; inside a group
 * the oldest first (it has waited longest). Ties by id so the order is stable.
 */
export function compareUrgency(a: Incident, b: Incident): number {
  const ra = statusInfo(a.status).rank === 0 ? 0 : isClosed(a.status) ? 2 : 1
  const rb = statusInfo(b.status).rank === 0 ? 0 : isClosed(b.status) ? 2 : 1
  if (ra !== rb) return ra - rb
  if (ra === 2) {
    // Closed ones: most recently closed first; they are history, not a queue.
    const ca = Date.parse(a.closed_at || a.created_at)
    const cb = Date.parse(b.closed_at || b.created_at)
    if (ca !== cb) return cb - ca
  } else {
    const ta = Date.parse(a.created_at)
    const tb = Date.parse(b.created_at)
    if (ta !== tb) return ta - tb
  }
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

export interface ApplyResult {
  incident: Incident
  /** Not known before this event. */
  isNew: boolean
  previous: Incident | null
}

/** Incidents by id, from the REST list and the live events; the list the panel and the map show. */
export const useIncidents = defineStore('incidents', () => {
  const byId = ref<Record<string, Incident>>({})
  /** Sequence number of the last live change per incident (a snapshot older than it must not undo it). */
  const touched = new Map<string, number>()
  let seq = 0
  const loading = ref(false)
  const loaded = ref(false)
  const error = ref<string | null>(null)
  const lastSyncAt = ref<number | null>(null)
  /** A request to bring one incident into view (the map flies there); `n` changes each time. */
  const focus = shallowRef<{ id: string; n: number } | null>(null)
  let inflight: Promise<Incident[]> | null = null
  let again = false

  const list = computed(() => Object.values(byId.value).sort(compareUrgency))
  const active = computed(() => list.value.filter((i) => !isClosed(i.status)))
  const closed = computed(() => list.value.filter((i) => isClosed(i.status)))
  const unacknowledged = computed(() => list.value.filter((i) => i.status === 'open'))

  function get(id: string): Incident | undefined {
    return byId.value[id]
  }

  /** A live `incident.created` / `incident.updated`: the event carries the whole incident. */
  function applyEvent(event: IncidentEvent): ApplyResult {
    const incident = pickIncident(event)
    const previous = byId.value[incident.id] ?? null
    seq += 1
    touched.set(incident.id, seq)
    byId.value[incident.id] = incident
    return { incident, isNew: previous === null, previous }
  }

  /**
   * An incident from an API answer (after an action). Answers can overtake live events, so a
   * status never goes back down the lifecycle here.
   */
  function upsert(incoming: Incident): Incident {
    const incident = pickIncident(incoming)
    const current = byId.value[incident.id]
    if (current && statusInfo(current.status).rank > statusInfo(incident.status).rank) return current
    byId.value[incident.id] = incident
    return incident
  }

  /**
   * Replace the list with a fresh snapshot from the API, keeping what live events changed
   * while the request was under way. Returns the incidents that were not known before.
   * Concurrent calls share one request (and one more runs after it if asked meanwhile).
   */
  function resync(): Promise<Incident[]> {
    if (inflight) {
      again = true
      return inflight
    }
    inflight = (async () => {
      const found: Incident[] = []
      try {
        do {
          again = false
          found.push(...(await fetchSnapshot()))
        } while (again)
      } finally {
        inflight = null
      }
      return found
    })()
    return inflight
  }

  async function fetchSnapshot(): Promise<Incident[]> {
    const startedAt = seq
    loading.value = true
    try {
      const since = new Date(Date.now() - RECENT_CLOSED_MS).toISOString()
      const [open, recent] = await Promise.all([
        api.get<Page<Incident>>('/api/incidents', { status: OPEN_STATUSES, limit: 500 }),
        api.get<Page<Incident>>('/api/incidents', { status: CLOSED_STATUSES, since, limit: RECENT_CLOSED_LIMIT }),
      ])
      const fresh: Record<string, Incident> = {}
      for (const item of [...recent.items, ...open.items]) fresh[item.id] = pickIncident(item)
      const next: Record<string, Incident> = {}
      const added: Incident[] = []
      for (const [id, incident] of Object.entries(fresh)) {
        const liveSeq = touched.get(id) ?? 0
        next[id] = liveSeq > startedAt && byId.value[id] ? byId.value[id] : incident
        if (!byId.value[id]) added.push(next[id])
      }
      // Keep what live events brought in during the request even if the snapshot missed it.
      for (const [id, incident] of Object.entries(byId.value)) {
        if (!next[id] && (touched.get(id) ?? 0) > startedAt) next[id] = incident
      }
      for (const id of touched.keys()) if (!next[id]) touched.delete(id)
      const firstLoad = !loaded.value
      byId.value = next
      loaded.value = true
      error.value = null
      lastSyncAt.value = Date.now()
      return firstLoad ? [] : added
    } catch (err) {
      error.value = errorMessage(err)
      throw err
    } finally {
      loading.value = false
    }
  }

  /** Ask the map to bring an incident into view. */
  function requestFocus(id: string): void {
    focus.value = { id, n: (focus.value?.n ?? 0) + 1 }
  }

  function clear(): void {
    byId.value = {}
    touched.clear()
    loaded.value = false
    error.value = null
    focus.value = null
  }

  return { byId, list, active, closed, unacknowledged, loading, loaded, error, lastSyncAt, focus, get, applyEvent, upsert, resync, requestFocus, clear }
})
