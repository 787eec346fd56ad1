import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { useAlarm } from '@/stores/alarm'
import { useIncidents } from '@/stores/incidents'
import { incident, incidentEvent } from '@/test/factories'

describe('alarm store', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    vi.useFakeTimers()
  })
  afterEach(() => vi.useRealTimers())

  it('rings while an SOS is unacknowledged', () => {
    const alarm = useAlarm()
    const incidents = useIncidents()
    expect(alarm.ringing).toBe(false)
    incidents.applyEvent(incidentEvent('incident.created', incident({ id: 'a' })))
    expect(alarm.ringing).toBe(true)
    incidents.applyEvent(incidentEvent('incident.updated', incident({ id: 'a', status: 'acknowledged' })))
    expect(alarm.ringing).toBe(false)
  })

  it('an SOS toast stays until someone acts on the incident', async () => {
    const alarm = useAlarm()
    const incidents = useIncidents()
    const { incident: a } = incidents.applyEvent(incidentEvent('incident.created', incident({ id: 'a', msg: 'Help' })))
    alarm.sos(a)
    expect(alarm.toasts).toHaveLength(1)
    expect(alarm.toasts[0]!.body).toContain('Help')
    incidents.applyEvent(incidentEvent('incident.updated', incident({ id: 'a', status: 'acknowledged' })))
    await Promise.resolve()
    await vi.advanceTimersByTimeAsync(0)
    expect(alarm.toasts).toHaveLength(0)
  })

  it('a repeated SOS replaces the earlier toast of the same incident', () => {
    const alarm = useAlarm()
    alarm.sos(incident({ id: 'a' }))
    alarm.sos(incident({ id: 'a', sos_count: 3 }), true)
    expect(alarm.toasts).toHaveLength(1)
    expect(alarm.toasts[0]!.title).toBe('Repeated SOS ×3')
  })

  it('a new SOS ends a mute', () => {
    const alarm = useAlarm()
    const controls = { mute: vi.fn(), unmute: vi.fn() }
    alarm.bind(controls)
    alarm.mute()
    expect(controls.mute).toHaveBeenCalled()
    alarm.sos(incident({ id: 'b' }))
    expect(controls.unmute).toHaveBeenCalled()
  })

  it('an SMS failure toast goes away by itself', () => {
    const alarm = useAlarm()
    alarm.smsFailed({
      type: 'sms.failed', incident_id: null, message_id: 'm', step: 'escalation', recipient: '+27*****12',
      attempts: 5, provider: 'clickatell', error: 'timeout', at: 'x',
    })
    expect(alarm.toasts).toHaveLength(1)
    vi.advanceTimersByTime(20_000)
    expect(alarm.toasts).toHaveLength(0)
  })

  it('dismiss removes one toast', () => {
    const alarm = useAlarm()
    alarm.sos(incident({ id: 'a' }))
    alarm.sos(incident({ id: 'b' }))
    alarm.dismiss(alarm.toasts[0]!.key)
    expect(alarm.toasts.map((t) => t.incidentId)).toEqual(['a'])
  })
})
