import type { Incident, IncidentEvent } from '@/api/types'

let n = 0

export function incident(over: Partial<Incident> = {}): Incident {
  n += 1
  return {
    id: over.id ?? `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    region: 'ZA-LP',
    status: 'open',
    source: 'mqtt',
    device: 'demo-button-1',
    msg: 'SOS',
    lat: -24.5,
    lng: 28.7,
    acc: 10,
    ts: '2026-01-01T00:00:00Z',
    created_at: '2026-01-01T00:00:00Z',
    sos_count: 1,
    ...over,
  }
}

export function incidentEvent(type: 'incident.created' | 'incident.updated', inc: Incident, extra: Partial<IncidentEvent> = {}): IncidentEvent {
  return { ...inc, type, event_id: 1, ...extra } as IncidentEvent
}
