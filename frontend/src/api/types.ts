/** Shapes of the backend's JSON (see the OpenAPI document at /schema). Dates are ISO 8601 strings. */

export interface Page<T> {
  items: T[]
  total: number
  limit: number
  offset: number
}

export type Role = 'admin' | 'operator' | 'viewer'

export interface User {
  id?: string
  username: string
  role: Role
  regions: string[]
}

export interface LoginResponse extends User {
  token: string
  csrf_token: string
  expires_in: number
  expires_at: string
}

export interface Region {
  code: string
  name: string
  timezone: string
  created_at: string
}

export type IncidentStatus = 'open' | 'acknowledged' | 'dispatched' | 'resolved' | 'cancelled'

export const OPEN_STATUSES: readonly IncidentStatus[] = ['open', 'acknowledged', 'dispatched']
export const CLOSED_STATUSES: readonly IncidentStatus[] = ['resolved', 'cancelled']

export interface Incident {
  id: string
  region: string
  status: IncidentStatus
  source: string
  device: string | null
  msg: string
  lat: number | null
  lng: number | null
  /** Reported location accuracy in metres. */
  acc: number | null
  /** When the device raised the alarm. */
  ts: string
  /** When the server received it. */
  created_at: string
  sos_count: number
  last_sos_at?: string | null
  acknowledged_at?: string | null
  acknowledged_by?: string | null
  ack_seconds?: number | null
  dispatched_at?: string | null
  vehicle_id?: string | null
  closed_at?: string | null
  closed_by?: string | null
}

/** One event on an incident's timeline (also the `change` of an `incident.updated` event). */
export interface TimelineEntry {
  id?: number
  type: string
  actor: string
  at: string
  payload: Record<string, unknown>
}

export interface NearbyVehicle {
  id: string
  callsign: string
  lat: number
  lng: number
  distance_m: number
  last_ping_at: string | null
}

export interface IncidentDetail extends Incident {
  timeline: TimelineEntry[]
  vehicle_callsign?: string | null
  nearest_vehicles: NearbyVehicle[]
}

export interface Vehicle {
  id: string
  callsign: string
  region: string
  active: boolean
  available: boolean
  lat: number | null
  lng: number | null
  speed: number | null
  /** Degrees clockwise from north. */
  heading: number | null
  last_ping_at: string | null
  age_seconds: number | null
  created_at: string
}

export interface VehiclePing {
  lat: number
  lng: number
  speed: number | null
  heading: number | null
  ts: string
  received_at: string
}

// Live events (SSE `event:` = type; the JSON also carries `type` and `event_id`) -------------

export interface LiveEventBase {
  type: string
  event_id?: number
}

export interface IncidentEvent extends LiveEventBase, Incident {
  type: 'incident.created' | 'incident.updated'
  /** What caused an update (a timeline entry without id). */
  change?: TimelineEntry
}

export interface VehiclePositionEvent extends LiveEventBase {
  type: 'vehicle.position'
  id: string
  callsign: string
  region: string
  lat: number
  lng: number
  speed: number | null
  heading: number | null
  ts: string
}

export interface SmsFailedEvent extends LiveEventBase {
  type: 'sms.failed'
  incident_id: string | null
  message_id: string
  step: string
  recipient: string
  attempts: number
  provider: string
  error: string
  at: string
}

export interface StreamResetEvent extends LiveEventBase {
  type: 'stream.reset'
  detail?: string
}

export type LiveEvent = IncidentEvent | VehiclePositionEvent | SmsFailedEvent | StreamResetEvent

export const LIVE_EVENT_TYPES = ['incident.created', 'incident.updated', 'vehicle.position', 'sms.failed', 'stream.reset'] as const
