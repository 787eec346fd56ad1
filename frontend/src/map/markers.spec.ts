import { describe, expect, it } from 'vitest'
import type { Vehicle } from '@/api/types'
import { escapeHtml, incidentClass, incidentHtml, vehicleClass, vehicleHtml, vehicleLabel } from '@/map/markers'
import { boundsFor } from '@/map/regions'
import { incident } from '@/test/factories'

const vehicle = (over: Partial<Vehicle> = {}): Vehicle => ({
  id: 'v1', callsign: 'Alpha <1>', region: 'ZA-LP', active: true, available: true, lat: -24, lng: 28, speed: 30,
  heading: 135, last_ping_at: '2026-01-01T00:00:00Z', age_seconds: 0, created_at: '2026-01-01T00:00:00Z', ...over,
})

describe('map markers', () => {
  it('incident markers carry the class the styles and tests use, by state', () => {
    expect(incidentClass(incident({ status: 'open' }), false)).toContain('incident-marker status-open incident-marker--alarm')
    expect(incidentClass(incident({ status: 'acknowledged' }), true)).toContain('incident-marker--active incident-marker--selected')
    expect(incidentClass(incident({ status: 'resolved' }), false)).toContain('incident-marker--muted')
  })

  it('states are shown with a symbol and a word, not colour alone', () => {
    expect(incidentHtml(incident({ status: 'open' }))).toContain('SOS')
    expect(incidentHtml(incident({ status: 'dispatched' }))).toContain('Dispatched')
    expect(incidentHtml(incident({ status: 'open', sos_count: 3 }))).toContain('×3')
  })

  it('vehicles show heading and the age of the last ping; stale ones say so', () => {
    const now = Date.parse('2026-01-01T00:02:05Z')
    const html = vehicleHtml(vehicle(), now)
    expect(html).toContain('rotate(135deg)')
    expect(html).toContain('Alpha &lt;1&gt; · 2 min 05 s ago')
    expect(vehicleLabel(vehicle({ available: false }), now)).toContain('assigned')
    expect(vehicleClass(vehicle(), Date.parse('2026-01-01T00:10:00Z'))).toContain('vehicle-marker--stale')
    expect(vehicleLabel(vehicle({ last_ping_at: null }), now)).toContain('no ping')
    expect(vehicleHtml(vehicle({ heading: null }), now)).not.toContain('rotate')
  })

  it('escapes HTML', () => {
    expect(escapeHtml(`<b>"x" & 'y'</b>`)).toBe('&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;')
  })

  it('regions have a first view; unknown ones fall back to the country', () => {
    expect(boundsFor(['ZA-LP'])).toEqual([26.4, -25.5, 31.9, -22.1])
    expect(boundsFor(['ZA-LP', 'ZA-GP'])).toEqual([26.4, -26.95, 31.9, -22.1])
    expect(boundsFor(['XX'])).toEqual([16.3, -34.9, 33.0, -22.1])
    expect(boundsFor([])).toEqual([16.3, -34.9, 33.0, -22.1])
  })
})
