import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { Incident, SmsFailedEvent } from '@/api/types'
import { useIncidents } from '@/stores/incidents'

export interface Toast {
  key: number
  kind: 'sos' | 'repeat' | 'sms'
  incidentId: string | null
  /** The incident's status when the toast was raised: the toast goes once the incident moves on. */
  status: string | null
  title: string
  body: string
  at: number
}

const MAX_TOASTS = 6
const SMS_TOAST_MS = 20_000

/**
 * What must get an operator's attention: the SOS toasts and the alarm's muted state. The
 * alarm rings while any SOS is unacknowledged; the sound itself lives in `useAlarm`.
 */
export const useAlarm = defineStore('alarm', () => {
  const incidents = useIncidents()
  const toasts = ref<Toast[]>([])
  const mutedUntil = ref<number | null>(null)
  const audioBlocked = ref(false)
  let counter = 0
  let controls: { mute(): void; unmute(): void } | null = null

  const ringing = computed(() => incidents.unacknowledged.length > 0)
  const muted = computed(() => mutedUntil.value !== null)

  /** The sound's owner (useAlarm) registers how to mute and unmute it. */
  function bind(c: { mute(): void; unmute(): void } | null): void {
    controls = c
  }

  function mute(): void {
    controls?.mute()
  }

  function unmute(): void {
    controls?.unmute()
  }

  function push(toast: Omit<Toast, 'key' | 'at'>): Toast {
    counter += 1
    const full: Toast = { ...toast, key: counter, at: Date.now() }
    // One toast per incident: a repeat replaces the earlier one.
    const rest = toast.incidentId ? toasts.value.filter((t) => t.incidentId !== toast.incidentId) : toasts.value
    toasts.value = [full, ...rest].slice(0, MAX_TOASTS)
    return full
  }

  /** A new SOS (or a repeated one on an open incident): toast, sound back on, map there. */
  function sos(incident: Incident, repeat = false): void {
    const where = incident.lat != null && incident.lng != null ? '' : ' — no location'
    push({
      kind: repeat ? 'repeat' : 'sos',
      incidentId: incident.id,
      status: incident.status,
      title: repeat ? `Repeated SOS ×${incident.sos_count}` : 'New SOS',
      body: `${incident.msg || 'SOS'} · ${incident.device ?? incident.source} · ${incident.region}${where}`,
    })
    if (incident.status === 'open') unmute()
    incidents.requestFocus(incident.id)
  }

  function smsFailed(event: SmsFailedEvent): void {
    const toast = push({
      kind: 'sms',
      incidentId: null,
      status: null,
      title: 'SMS alert failed',
      body: `${event.step} to ${event.recipient} via ${event.provider}: ${event.error}`,
    })
    setTimeout(() => dismiss(toast.key), SMS_TOAST_MS)
  }

  function dismiss(key: number): void {
    toasts.value = toasts.value.filter((t) => t.key !== key)
  }

  function clear(): void {
    toasts.value = []
  }

  // An SOS toast goes away once someone has acted on the incident (acknowledged it, or more).
  watch(
    () => incidents.byId,
    (byId) => {
      const keep = toasts.value.filter((t) => {
        if (!t.incidentId) return true
        const current = byId[t.incidentId]
        return !current || current.status === t.status
      })
      if (keep.length !== toasts.value.length) toasts.value = keep
    },
    { deep: true },
  )

  return { toasts, mutedUntil, audioBlocked, ringing, muted, bind, mute, unmute, sos, smsFailed, dismiss, clear }
})
