import { describe, expect, it } from 'vitest'
import { ageMs, formatAge, formatDistance } from '@/composables/format'
import { allowedActions, statusInfo } from '@/composables/status'

describe('formatting', () => {
  it('ages read well as they count up', () => {
    expect(formatAge(0)).toBe('0 s')
    expect(formatAge(59_999)).toBe('59 s')
    expect(formatAge(65_000)).toBe('1 min 05 s')
    expect(formatAge(3 * 3600_000 + 7 * 60_000)).toBe('3 h 07 min')
    expect(formatAge(26 * 3600_000)).toBe('1 d 2 h')
    expect(formatAge(-5000)).toBe('0 s')
  })

  it('an age is never negative (client clock behind the server)', () => {
    expect(ageMs('2026-01-01T00:00:10Z', Date.parse('2026-01-01T00:00:00Z'))).toBe(0)
    expect(ageMs(null, 5)).toBe(0)
  })

  it('distances', () => {
    expect(formatDistance(850)).toBe('850 m')
    expect(formatDistance(1234)).toBe('1.2 km')
    expect(formatDistance(23_400)).toBe('23 km')
  })

  it('the lifecycle allows what the backend allows', () => {
    expect(allowedActions('open')).toEqual({ acknowledge: true, dispatch: true, resolve: false, cancel: true })
    expect(allowedActions('acknowledged')).toEqual({ acknowledge: false, dispatch: true, resolve: true, cancel: true })
    expect(allowedActions('dispatched')).toEqual({ acknowledge: false, dispatch: true, resolve: true, cancel: true })
    expect(allowedActions('resolved')).toEqual({ acknowledge: false, dispatch: false, resolve: false, cancel: false })
    expect(statusInfo('open').label).toBe('Unacknowledged')
    expect(statusInfo('weird').label).toBe('weird')
  })
})
