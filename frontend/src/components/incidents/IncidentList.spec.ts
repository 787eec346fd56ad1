import { mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { nextTick } from 'vue'
import { createMemoryHistory, createRouter } from 'vue-router'
import IncidentList from '@/components/incidents/IncidentList.vue'
import { useIncidents } from '@/stores/incidents'
import { incident, incidentEvent } from '@/test/factories'

function router() {
  const Stub = { template: '<div />' }
  return createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: '/', name: 'monitor', component: Stub },
      { path: '/incidents/:id', name: 'incident', component: Stub },
    ],
  })
}

describe('IncidentList', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    vi.useFakeTimers()
    vi.setSystemTime(new Date('2026-01-01T00:10:00Z'))
  })
  afterEach(() => vi.useRealTimers())

  it('lists by urgency with status and id on every row, ages counting up', async () => {
    const s = useIncidents()
    s.applyEvent(incidentEvent('incident.created', incident({ id: 'ack', status: 'acknowledged', created_at: '2026-01-01T00:00:00Z' })))
    s.applyEvent(incidentEvent('incident.created', incident({ id: 'new', created_at: '2026-01-01T00:09:00Z' })))
    const r = router()
    const w = mount(IncidentList, { global: { plugins: [r] } })
    await nextTick()
    const rows = w.findAll('[data-testid="incident-item"]')
    expect(rows.map((r) => r.attributes('data-incident-id'))).toEqual(['new', 'ack'])
    expect(rows.map((r) => r.attributes('data-status'))).toEqual(['open', 'acknowledged'])
    expect(rows[0]!.text()).toContain('Unacknowledged')
    expect(rows[0]!.text()).toContain('1 min 00 s')
    vi.advanceTimersByTime(5000)
    await nextTick()
    expect(w.find('[data-testid="incident-item"]').text()).toContain('1 min 05 s')
    // Rows are links: focusable, Enter opens.
    expect(rows[0]!.find('a').attributes('href')).toBe('/incidents/new')
    w.unmount()
  })

  it('moves between rows with the arrow keys', async () => {
    const s = useIncidents()
    s.applyEvent(incidentEvent('incident.created', incident({ id: 'a', created_at: '2026-01-01T00:00:00Z' })))
    s.applyEvent(incidentEvent('incident.created', incident({ id: 'b', created_at: '2026-01-01T00:01:00Z' })))
    const w = mount(IncidentList, { global: { plugins: [router()] }, attachTo: document.body })
    await nextTick()
    const links = w.findAll('a')
    ;(links[0]!.element as HTMLElement).focus()
    await w.find('[data-testid="incident-list"]').trigger('keydown', { key: 'ArrowDown' })
    expect(document.activeElement).toBe(links[1]!.element)
    w.unmount()
  })
})
