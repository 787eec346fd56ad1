/** The HTML inside the map's divIcons (kept apart from Leaflet so it can be tested). */
import type { Incident, Vehicle } from '@/api/types'
import { formatAge } from '@/composables/format'
import { isClosed, statusInfo } from '@/composables/status'

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string)
}

/** Classes of the incident marker's root element (Leaflet puts `className` there). */
export function incidentClass(incident: Incident, selected: boolean): string {
  const kind = incident.status === 'open' ? 'incident-marker--alarm' : isClosed(incident.status) ? 'incident-marker--muted' : 'incident-marker--active'
  return `incident-marker status-${incident.status} ${kind}${selected ? ' incident-marker--selected' : ''}`
}

export function incidentHtml(incident: Incident): string {
  const info = statusInfo(incident.status)
  const label = incident.status === 'open' ? 'SOS' : info.label
  const count = incident.sos_count > 1 ? `<span class="im-count">×${incident.sos_count}</span>` : ''
  return `<span class="im-pin"><span class="im-icon" aria-hidden="true">${info.icon}</span>${count}</span><span class="im-label">${escapeHtml(label)}</span>`
}

export function incidentTitle(incident: Incident): string {
  return `${statusInfo(incident.status).label}: ${incident.msg || 'SOS'} (${incident.device ?? incident.source}, ${incident.region})`
}

/** A vehicle is "stale" when its last ping is older than this. */
export const VEHICLE_STALE_MS = 5 * 60 * 1000

export function vehicleAgeMs(vehicle: Vehicle, now: number): number | null {
  if (!vehicle.last_ping_at) return null
  const t = Date.parse(vehicle.last_ping_at)
  return Number.isNaN(t) ? null : Math.max(0, now - t)
}

export function vehicleClass(vehicle: Vehicle, now: number): string {
  const age = vehicleAgeMs(vehicle, now)
  const stale = age === null || age > VEHICLE_STALE_MS
  return `vehicle-marker ${vehicle.available ? 'vehicle-marker--available' : 'vehicle-marker--assigned'}${stale ? ' vehicle-marker--stale' : ''}`
}

export function vehicleLabel(vehicle: Vehicle, now: number): string {
  const age = vehicleAgeMs(vehicle, now)
  const ageText = age === null ? 'no ping' : `${formatAge(age)} ago`
  const state = vehicle.available ? '' : ' · assigned'
  const stale = age === null || age > VEHICLE_STALE_MS ? ' · stale' : ''
  return `${vehicle.callsign} · ${ageText}${state}${stale}`
}

export function vehicleHtml(vehicle: Vehicle, now: number): string {
  const heading = vehicle.heading
  const arrow =
    heading == null
      ? '<span class="vm-dot" aria-hidden="true">●</span>'
      : `<span class="vm-arrow" aria-hidden="true" style="transform: rotate(${Math.round(heading)}deg)">▲</span>`
  return `${arrow}<span class="vm-label">${escapeHtml(vehicleLabel(vehicle, now))}</span>`
}
