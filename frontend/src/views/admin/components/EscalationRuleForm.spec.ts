import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mount, type VueWrapper } from '@vue/test-utils'
import EscalationRuleForm from './EscalationRuleForm.vue'
import type { EscalationRule } from '@/api/admin'
import { fakeBackend, problem, REGIONS, reply, settle } from '../testing'

const RULE: EscalationRule = {
  id: 'r1',
  region: 'ZA-LP',
  name: 'Wake the duty manager',
  condition: 'open',
  active: true,
  levels: [
    { threshold_minutes: 5, targets: ['+27821234567'], template: 'L1 {incident}' },
    { threshold_minutes: 15, targets: ['+27830000000', '+27840000000'], template: 'L2 {incident} {minutes}' },
  ],
  created_at: '2026-01-01T00:00:00Z',
  updated_at: '2026-01-01T00:00:00Z',
}

describe('EscalationRuleForm', () => {
  let backend: ReturnType<typeof fakeBackend>
  let wrapper: VueWrapper | null = null

  beforeEach(() => {
    backend = fakeBackend().install()
  })
  afterEach(() => {
    wrapper?.unmount()
    wrapper = null
  })

  function mountForm(rule: EscalationRule | null = null) {
    wrapper = mount(EscalationRuleForm, { props: { rule, regions: REGIONS, defaultRegion: 'ZA-LP' }, attachTo: document.body })
    return wrapper
  }
  const levels = (w: VueWrapper) => w.findAll('[data-testid="rule-level"]')
  const thresholds = (w: VueWrapper) =>
    levels(w).map((l) => (l.find('[data-testid="level-threshold"]').element as HTMLInputElement).value)
  const templates = (w: VueWrapper) =>
    levels(w).map((l) => (l.find('[data-testid="level-template"]').element as HTMLTextAreaElement).value)

  it('adds, moves and removes levels, keeping each level with its own inputs', async () => {
    const w = mountForm(RULE)
    expect(thresholds(w)).toEqual(['5', '15'])

    await w.get('[data-testid="level-add"]').trigger('click')
    expect(thresholds(w)).toEqual(['5', '15', '30'])
    // The new level takes the previous template and has focus on its threshold.
    expect(templates(w)[2]).toBe('L2 {incident} {minutes}')
    expect(document.activeElement).toBe(levels(w)[2]!.find('[data-testid="level-threshold"]').element)

    await levels(w)[2]!.get('[data-testid="level-template"]').setValue('L3 {rule}')
    await levels(w)[2]!.get('[data-testid="level-up"]').trigger('click')
    expect(thresholds(w)).toEqual(['5', '30', '15'])
    expect(templates(w)).toEqual(['L1 {incident}', 'L3 {rule}', 'L2 {incident} {minutes}'])
    // The first level cannot move up nor the last down.
    expect(levels(w)[0]!.get('[data-testid="level-up"]').attributes('disabled')).toBeDefined()
    expect(levels(w)[2]!.get('[data-testid="level-down"]').attributes('disabled')).toBeDefined()

    await w.get('[data-testid="level-sort"]').trigger('click')
    expect(thresholds(w)).toEqual(['5', '15', '30'])

    await levels(w)[0]!.get('[data-testid="level-remove"]').trigger('click')
    expect(thresholds(w)).toEqual(['15', '30'])
    expect(w.findAll('h3').map((h) => h.text())).toEqual(['Level 1', 'Level 2'])
  })

  it('never removes the last level', async () => {
    const w = mountForm()
    expect(levels(w)).toHaveLength(1)
    expect(w.get('[data-testid="level-remove"]').attributes('disabled')).toBeDefined()
  })

  it('shows what is wrong at each level and sends nothing', async () => {
    const w = mountForm(RULE)
    await levels(w)[1]!.get('[data-testid="level-threshold"]').setValue('5')
    await levels(w)[0]!.get('[data-testid="level-targets"]').setValue('0821234567')
    await levels(w)[1]!.get('[data-testid="level-template"]').setValue('hi {who}')
    await w.get('form').trigger('submit')
    await settle()

    const first = levels(w)[0]!
    const second = levels(w)[1]!
    expect(first.text()).toContain('not an E.164 number')
    expect(second.text()).toContain("Must be more than level 1's 5 min")
    expect(second.text()).toContain('Unknown placeholder {who}')
    expect(first.get('[data-testid="level-targets"]').attributes('aria-invalid')).toBe('true')
    expect(backend.calls).toHaveLength(0)
    // Focus goes to the first problem.
    expect(document.activeElement).toBe(first.find('[data-testid="level-targets"]').element)
  })

  it('creates a rule with the levels in order and the targets normalised', async () => {
    backend.on('POST', '/api/escalation-rules', (c) => reply(201, { ...RULE, id: 'new', ...(c.body as object) }))
    const w = mountForm()
    await w.get('[data-testid="rule-name"]').setValue('  Night shift  ')
    await w.get('[data-testid="rule-condition"]').setValue('unresolved')
    await levels(w)[0]!.get('[data-testid="level-targets"]').setValue('+27 82 123 4567\n+27-83-000-0000')
    await w.get('[data-testid="level-add"]').trigger('click')
    await levels(w)[1]!.get('[data-testid="level-targets"]').setValue('+27840000000')
    await levels(w)[1]!.get('[data-testid="level-template"]').setValue('Still open after {minutes} min: {link}')
    await w.get('form').trigger('submit')
    await settle()

    const [call] = backend.find('POST', '/api/escalation-rules')
    expect(call!.body).toEqual({
      region: 'ZA-LP',
      name: 'Night shift',
      condition: 'unresolved',
      active: true,
      levels: [
        {
          threshold_minutes: 5,
          targets: ['+27821234567', '+27830000000'],
          template: 'Incident {incident} in {region} unacknowledged for {minutes} min: {link}',
        },
        { threshold_minutes: 10, targets: ['+27840000000'], template: 'Still open after {minutes} min: {link}' },
      ],
    })
    expect(w.emitted('saved')?.[0]?.[0]).toMatchObject({ id: 'new', name: 'Night shift' })
  })

  it('PATCHes an existing rule and shows the server’s refusal at the level it names', async () => {
    backend.on('PATCH', '/api/escalation-rules/r1', () =>
      problem(422, 'level 2: target +27830000000 is listed twice'),
    )
    const w = mountForm(RULE)
    await levels(w)[0]!.get('[data-testid="level-threshold"]').setValue('7')
    await w.get('form').trigger('submit')
    await settle()

    const [call] = backend.find('PATCH', '/api/escalation-rules/r1')
    expect((call!.body as { levels: { threshold_minutes: number }[] }).levels.map((l) => l.threshold_minutes)).toEqual([7, 15])
    expect(w.get('[role="alert"]').text()).toContain('level 2: target +27830000000 is listed twice')
    expect(levels(w)[1]!.get('[data-testid="level-targets"]').attributes('aria-invalid')).toBe('true')
    expect(w.emitted('saved')).toBeUndefined()
  })

  it('inserts a placeholder at the cursor', async () => {
    const w = mountForm()
    const area = levels(w)[0]!.get('[data-testid="level-template"]')
    await area.setValue('Hello  world')
    ;(area.element as HTMLTextAreaElement).setSelectionRange(6, 6)
    const chip = levels(w)[0]!.findAll('.chip').find((b) => b.text().startsWith('{region}'))!
    await chip.trigger('click')
    expect((area.element as HTMLTextAreaElement).value).toBe('Hello {region} world')
  })
})
