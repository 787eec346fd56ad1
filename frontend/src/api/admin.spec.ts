import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '@/api/client'
import * as admin from '@/api/admin'
import { fakeBackend, page, problem, reply } from '@/views/admin/testing'

describe('admin API', () => {
  let backend: ReturnType<typeof fakeBackend>

  beforeEach(() => {
    backend = fakeBackend().install()
    document.cookie = 'naboom_csrf=csrf-123'
  })
  afterEach(() => {
    document.cookie = 'naboom_csrf=; expires=Thu, 01 Jan 1970 00:00:00 GMT'
  })

  it('creates a device with a POST carrying the CSRF header and returns the one-time credentials', async () => {
    backend.on('POST', '/api/devices', () => reply(201, { pid: 'btn-1', kid: 1, secret: 'c2VjcmV0' }))
    const creds = await admin.devices.create({ pid: 'btn-1', region: 'ZA-LP', label: null })
    expect(creds).toEqual({ pid: 'btn-1', kid: 1, secret: 'c2VjcmV0' })
    const [call] = backend.find('POST', '/api/devices')
    expect(call!.body).toEqual({ pid: 'btn-1', region: 'ZA-LP', label: null })
    expect(call!.headers['X-CSRF-Token']).toBe('csrf-123')
  })

  it('encodes pids in paths (pids may hold ":" and ".")', async () => {
    backend.on('POST', /^\/api\/devices\/[^/]+\/keys\/2\/revoke$/, () => ({ pid: 'a:b.c', keys: [] }))
    backend.on('GET', /^\/api\/devices\/[^/]+\/rejections$/, () => page([]))
    await admin.devices.revokeKey('a:b.c', 2)
    await admin.devices.rejections('a:b.c', { limit: 20, offset: 40, reason: 'bad_signature' })
    expect(backend.fetch.mock.calls[0]![0]).toBe('/api/devices/a%3Ab.c/keys/2/revoke')
    const url = String(backend.fetch.mock.calls[1]![0])
    expect(url.startsWith('/api/devices/a%3Ab.c/rejections?')).toBe(true)
    expect(Object.fromEntries(new URL(url, 'http://x').searchParams)).toEqual({
      limit: '20',
      offset: '40',
      reason: 'bad_signature',
    })
  })

  it('leaves empty filters out of the query', async () => {
    backend.on('GET', '/api/sms/messages', () => page([]))
    await admin.sms.messages({ region: '', status: undefined, incident_id: '', limit: 50, offset: 0 })
    const [call] = backend.find('GET', '/api/sms/messages')
    expect([...call!.query.keys()].sort()).toEqual(['limit', 'offset'])
  })

  it('sends only what changes in a PATCH and DELETEs contacts', async () => {
    backend.on('PATCH', /^\/api\/users\/u1$/, (c) => ({ id: 'u1', username: 'x', role: 'viewer', regions: ['ZA-LP'], active: true, ...(c.body as object) }))
    backend.on('DELETE', '/api/regions/ZA-LP/contacts/c9', () => reply(204))
    const u = await admin.users.update('u1', { role: 'viewer', regions: ['ZA-LP'] })
    expect(u.role).toBe('viewer')
    expect(backend.find('PATCH', '/api/users/u1')[0]!.body).toEqual({ role: 'viewer', regions: ['ZA-LP'] })
    await expect(admin.contacts.remove('ZA-LP', 'c9')).resolves.toBeUndefined()
    expect(backend.find('DELETE', '/api/regions/ZA-LP/contacts/c9')[0]!.headers['X-CSRF-Token']).toBe('csrf-123')
  })

  it('resets a password with the password in the body, never the query', async () => {
    backend.on('POST', '/api/users/u1/password', () => ({ id: 'u1', username: 'x', role: 'operator', regions: [], active: true }))
    await admin.users.resetPassword('u1', 'correct horse')
    const [call] = backend.find('POST', '/api/users/u1/password')
    expect(call!.body).toEqual({ password: 'correct horse' })
    expect([...call!.query.keys()]).toEqual([])
  })

  it('turns problem details into an ApiError carrying the detail', async () => {
    backend.on('POST', '/api/escalation-rules', () =>
      problem(422, 'level 2: threshold_minutes 3 must be greater than level 1\'s 5'),
    )
    const err = await admin.escalationRules
      .create({ region: 'ZA-LP', name: 'r', levels: [] })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).status).toBe(422)
    expect((err as ApiError).message).toContain('level 2')
  })

  it('builds the provisioning JSON the QR code encodes: pid, kid and secret only', () => {
    const json = admin.provisioningPayload({ pid: 'btn-1', kid: 3, secret: 'abc=' })
    expect(JSON.parse(json)).toEqual({ pid: 'btn-1', kid: 3, secret: 'abc=' })
    expect(Object.keys(JSON.parse(json))).toEqual(['pid', 'kid', 'secret'])
  })

  it('adds the broker login to the provisioning JSON when the server made one', () => {
    const json = admin.provisioningPayload({
      pid: 'btn-1', kid: 1, secret: 'abc=', mqtt_username: 'btn-1', mqtt_password: 'pw',
    })
    // The same keys the simulator and `naboom device create --broker` use.
    expect(JSON.parse(json)).toEqual({ pid: 'btn-1', kid: 1, secret: 'abc=', mqtt_username: 'btn-1', mqtt_password: 'pw' })
  })

  it('reads providers and message details from the SMS endpoints', async () => {
    backend.on('GET', '/api/sms/providers', () => [
      { name: 'console', kind: 'console', role: 'primary', url: null, problem: null, breaker: { state: 'closed', failures: 0, open_until: null, last_error: null } },
    ])
    backend.on('GET', '/api/sms/messages/m1', () => ({ id: 'm1', attempt_log: [] }))
    expect((await admin.sms.providers())[0]!.breaker.state).toBe('closed')
    expect((await admin.sms.message('m1')).attempt_log).toEqual([])
  })
})
