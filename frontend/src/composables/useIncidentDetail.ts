import { computed, onScopeDispose, ref, watch, type Ref } from 'vue'
import { api, ApiError, errorMessage } from '@/api/client'
import type { Incident, IncidentDetail, TimelineEntry } from '@/api/types'
import { useIncidents } from '@/stores/incidents'

/**
 * One incident with its timeline and nearest vehicles. The incident's fields follow the store
 * (a live `incident.updated` changes the screen at once); the timeline and nearest vehicles are
 * fetched again shortly after each change. Actions go through here.
 */
export function useIncidentDetail(id: Ref<string | null>, refreshDelayMs = 300) {
  const incidents = useIncidents()
  const detail = ref<IncidentDetail | null>(null)
  const loading = ref(false)
  const error = ref<string | null>(null)
  const notFound = ref(false)
  const busy = ref<string | null>(null)
  const actionError = ref<string | null>(null)
  let timer: ReturnType<typeof setTimeout> | null = null
  let token = 0

  /** The detail with the store's newer fields on top. */
  const incident = computed<IncidentDetail | null>(() => {
    if (!detail.value) return null
    const live = id.value ? incidents.byId[id.value] : undefined
    return live ? { ...detail.value, ...live } : detail.value
  })

  async function load(): Promise<void> {
    const current = id.value
    if (!current) {
      detail.value = null
      return
    }
    const mine = ++token
    loading.value = true
    try {
      const fetched = await api.get<IncidentDetail>(`/api/incidents/${encodeURIComponent(current)}`)
      if (mine !== token) return
      detail.value = fetched
      error.value = null
      notFound.value = false
      incidents.upsert(fetched)
    } catch (err) {
      if (mine !== token) return
      notFound.value = err instanceof ApiError && (err.status === 404 || err.status === 400)
      error.value = errorMessage(err)
    } finally {
      if (mine === token) loading.value = false
    }
  }

  function scheduleRefresh(): void {
    if (timer !== null) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = null
      void load()
    }, refreshDelayMs)
  }

  watch(
    id,
    () => {
      detail.value = null
      error.value = null
      actionError.value = null
      notFound.value = false
      void load()
    },
    { immediate: true },
  )

  // A live change to this incident (by anyone): refresh timeline and nearest vehicles.
  watch(
    () => (id.value ? incidents.byId[id.value] : undefined),
    (now, before) => {
      if (now && before && now !== before && detail.value) scheduleRefresh()
    },
  )

  onScopeDispose(() => {
    if (timer !== null) clearTimeout(timer)
    token += 1
  })

  async function act(name: string, path: string, body?: unknown): Promise<boolean> {
    if (!id.value || busy.value) return false
    busy.value = name
    actionError.value = null
    try {
      const result = await api.post<Incident | TimelineEntry>(`/api/incidents/${encodeURIComponent(id.value)}/${path}`, body)
      if (result && 'status' in result) incidents.upsert(result)
      await load()
      return true
    } catch (err) {
      actionError.value = errorMessage(err)
      // The incident may have moved on under us (another operator): show its real state.
      if (err instanceof ApiError && err.status === 409) void load()
      return false
    } finally {
      busy.value = null
    }
  }

  const withNote = (note?: string) => (note && note.trim() ? { note: note.trim() } : undefined)

  return {
    detail,
    incident,
    loading,
    error,
    notFound,
    busy,
    actionError,
    reload: load,
    acknowledge: (note?: string) => act('acknowledge', 'acknowledge', withNote(note)),
    resolve: (note?: string) => act('resolve', 'resolve', withNote(note)),
    cancel: (note?: string) => act('cancel', 'cancel', withNote(note)),
    dispatch: (vehicleId: string, note?: string) => act('dispatch', 'dispatch', { vehicle_id: vehicleId, ...withNote(note) }),
    addNote: (text: string) => act('note', 'notes', { text: text.trim() }),
  }
}
