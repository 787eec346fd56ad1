/**
 * Typed calls of the admin API (devices, vehicles, users, regions, contacts, escalation
 * rules, outbound SMS). Field names follow the backend's msgspec schemas exactly.
 */
import { api } from '@/api/client'
import type { Page, Region, Role } from '@/api/types'

export type { Page, Role }

export interface PageQuery {
  limit?: number
  offset?: number
}

type Query = Record<string, string | number | boolean | undefined | null>

const seg = (value: string): string => encodeURIComponent(value)

/** The query without empty filters (an empty select means "any"). */
export function cleanQuery(q: object): Query {
  const out: Query = {}
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === '') continue
    out[k] = v as string | number | boolean
  }
  return out
}

// ---------------------------------------------------------------- devices

export type KeyState = 'current' | 'grace' | 'revoked'

export interface DeviceKey {
  kid: number
  state: KeyState | string
  grace_until: string | null
  created_at: string
}

export interface Device {
  id: string
  pid: string
  region: string
  label: string | null
  active: boolean
  last_seen_at: string | null
  last_message: string | null
  created_at: string
  keys: DeviceKey[]
}

export interface DeviceCreate {
  pid: string
  region: string
  label?: string | null
}

/** The only time a device secret leaves the server: at creation and rotation. */
export interface DeviceCredentials {
  pid: string
  kid: number
  secret: string
  /** The device's broker login: only when the deployment manages broker accounts, only at creation. */
  mqtt_username?: string
  mqtt_password?: string
}

/** Why the ingest refused a message (CONTRACT §1, in the order they are checked). */
export const REJECTION_REASONS = [
  'malformed_json',
  'invalid_schema',
  'topic_mismatch',
  'unknown_device',
  'inactive_device',
  'unknown_kid',
  'revoked_kid',
  'bad_signature',
  'stale_ts',
  'future_ts',
  'replayed_nonce',
] as const

/** A refused MQTT message (no secrets, no signature material). */
export interface Rejection {
  id: number
  received_at: string
  transport: string
  topic: string | null
  pid: string | null
  reason: string
  detail: string
  size: number
  excerpt: string | null
}

export const devices = {
  list: (q: PageQuery = {}) => api.get<Page<Device>>('/api/devices', cleanQuery(q)),
  get: (pid: string) => api.get<Device>(`/api/devices/${seg(pid)}`),
  create: (body: DeviceCreate) => api.post<DeviceCredentials>('/api/devices', body),
  rotate: (pid: string) => api.post<DeviceCredentials>(`/api/devices/${seg(pid)}/rotate`),
  revokeKey: (pid: string, kid: number) =>
    api.post<Device>(`/api/devices/${seg(pid)}/keys/${kid}/revoke`),
  deactivate: (pid: string) => api.post<Device>(`/api/devices/${seg(pid)}/deactivate`),
  activate: (pid: string) => api.post<Device>(`/api/devices/${seg(pid)}/activate`),
  rejections: (pid: string, q: PageQuery & { reason?: string } = {}) =>
    api.get<Page<Rejection>>(`/api/devices/${seg(pid)}/rejections`, cleanQuery(q)),
}

/** The JSON a device is provisioned with (what the QR code encodes). */
export function provisioningPayload(c: DeviceCredentials): string {
  const login = c.mqtt_username ? { mqtt_username: c.mqtt_username, mqtt_password: c.mqtt_password } : {}
  return JSON.stringify({ pid: c.pid, kid: c.kid, secret: c.secret, ...login })
}

// ---------------------------------------------------------------- vehicles

export interface AdminVehicle {
  id: string
  callsign: string
  region: string
  active: boolean
  available: boolean
  lat: number | null
  lng: number | null
  speed: number | null
  heading: number | null
  last_ping_at: string | null
  age_seconds: number | null
  created_at: string
}

export interface VehicleCreate {
  callsign: string
  region: string
}

/** The only time a vehicle token leaves the server: at registration and rotation. */
export interface VehicleCredentials {
  id: string
  callsign: string
  region: string
  token: string
}

export const vehicles = {
  list: (q: PageQuery & { region?: string; active?: boolean } = {}) =>
    api.get<Page<AdminVehicle>>('/api/vehicles', cleanQuery(q)),
  create: (body: VehicleCreate) => api.post<VehicleCredentials>('/api/vehicles', body),
  newToken: (id: string) => api.post<VehicleCredentials>(`/api/vehicles/${seg(id)}/token`),
  deactivate: (id: string) => api.post<AdminVehicle>(`/api/vehicles/${seg(id)}/deactivate`),
  activate: (id: string) => api.post<AdminVehicle>(`/api/vehicles/${seg(id)}/activate`),
}

// ---------------------------------------------------------------- users

export const ROLES: readonly Role[] = ['admin', 'operator', 'viewer']

export interface AdminUser {
  id: string
  username: string
  role: Role | string
  regions: string[]
  active: boolean
}

export interface UserCreate {
  username: string
  password: string
  role: Role
  regions: string[]
}

export interface UserUpdate {
  role?: Role
  regions?: string[]
  active?: boolean
}

export const users = {
  list: (q: PageQuery = {}) => api.get<Page<AdminUser>>('/api/users', cleanQuery(q)),
  get: (id: string) => api.get<AdminUser>(`/api/users/${seg(id)}`),
  create: (body: UserCreate) => api.post<AdminUser>('/api/users', body),
  update: (id: string, body: UserUpdate) => api.patch<AdminUser>(`/api/users/${seg(id)}`, body),
  resetPassword: (id: string, password: string) =>
    api.post<AdminUser>(`/api/users/${seg(id)}/password`, { password }),
}

// ---------------------------------------------------------------- regions and contacts

export type AdminRegion = Region

export interface RegionCreate {
  code: string
  name: string
  timezone: string
}

export interface RegionUpdate {
  name?: string
  timezone?: string
}

export interface Contact {
  id: string
  region: string
  name: string
  phone: string
  active: boolean
  created_at: string
  updated_at: string
}

export interface ContactCreate {
  name: string
  phone: string
  active?: boolean
}

export interface ContactUpdate {
  name?: string
  phone?: string
  active?: boolean
}

export const regions = {
  list: () => api.get<AdminRegion[]>('/api/regions'),
  create: (body: RegionCreate) => api.post<AdminRegion>('/api/regions', body),
  update: (code: string, body: RegionUpdate) =>
    api.patch<AdminRegion>(`/api/regions/${seg(code)}`, body),
}

export const contacts = {
  list: (region: string, q: PageQuery = {}) =>
    api.get<Page<Contact>>(`/api/regions/${seg(region)}/contacts`, cleanQuery(q)),
  create: (region: string, body: ContactCreate) =>
    api.post<Contact>(`/api/regions/${seg(region)}/contacts`, body),
  update: (region: string, id: string, body: ContactUpdate) =>
    api.patch<Contact>(`/api/regions/${seg(region)}/contacts/${seg(id)}`, body),
  remove: (region: string, id: string) =>
    api.del(`/api/regions/${seg(region)}/contacts/${seg(id)}`),
}

// ---------------------------------------------------------------- escalation rules

export type EscalationCondition = 'open' | 'unresolved'

export interface EscalationLevel {
  threshold_minutes: number
  targets: string[]
  template: string
}

export interface EscalationRule {
  id: string
  region: string
  name: string
  condition: EscalationCondition
  active: boolean
  levels: EscalationLevel[]
  created_at: string
  updated_at: string
}

export interface EscalationRuleCreate {
  region: string
  name: string
  levels: EscalationLevel[]
  condition?: EscalationCondition
  active?: boolean
}

export type EscalationRuleUpdate = Partial<EscalationRuleCreate>

export const escalationRules = {
  list: (q: PageQuery & { region?: string } = {}) =>
    api.get<Page<EscalationRule>>('/api/escalation-rules', cleanQuery(q)),
  get: (id: string) => api.get<EscalationRule>(`/api/escalation-rules/${seg(id)}`),
  create: (body: EscalationRuleCreate) => api.post<EscalationRule>('/api/escalation-rules', body),
  update: (id: string, body: EscalationRuleUpdate) =>
    api.patch<EscalationRule>(`/api/escalation-rules/${seg(id)}`, body),
  remove: (id: string) => api.del(`/api/escalation-rules/${seg(id)}`),
}

// ---------------------------------------------------------------- outbound SMS

export const MESSAGE_STATUSES = [
  'queued',
  'sending',
  'retrying',
  'sent',
  'delivered',
  'failed',
  'cancelled',
] as const
export type MessageStatus = (typeof MESSAGE_STATUSES)[number]

export interface SmsMessage {
  id: string
  incident_id: string | null
  region: string
  step: string
  recipient: string
  body: string
  status: MessageStatus | string
  provider: string | null
  provider_message_id: string | null
  attempts: number
  last_error: string | null
  created_at: string
  updated_at: string
  sent_at: string | null
  delivered_at: string | null
}

export interface SmsAttempt {
  number: number
  provider: string | null
  started_at: string
  finished_at: string | null
  /** `accepted`, `error`, `unknown`, `skipped`, or null while in progress. */
  outcome: string | null
  detail: string | null
}

export interface SmsMessageDetail extends SmsMessage {
  attempt_log: SmsAttempt[]
}

export interface Breaker {
  /** `closed`, `open` or `half_open`. */
  state: string
  failures: number
  open_until: string | null
  last_error: string | null
}

export interface SmsProvider {
  name: string
  kind: string
  role: string
  url: string | null
  problem: string | null
  breaker: Breaker
}

export interface SmsQuery extends PageQuery {
  region?: string
  status?: MessageStatus
  incident_id?: string
}

export const sms = {
  messages: (q: SmsQuery = {}) => api.get<Page<SmsMessage>>('/api/sms/messages', cleanQuery(q)),
  message: (id: string) => api.get<SmsMessageDetail>(`/api/sms/messages/${seg(id)}`),
  providers: () => api.get<SmsProvider[]>('/api/sms/providers'),
}
