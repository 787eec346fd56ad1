import { describe, expect, it } from 'vitest'
import {
  addLevel,
  draftFromLevel,
  hasErrors,
  levelOfProblem,
  MAX_LEVELS,
  moveLevel,
  newLevel,
  parseTargets,
  previewTemplate,
  removeLevel,
  sortLevels,
  templateProblem,
  toLevels,
  validateLevels,
  type LevelDraft,
} from './escalation'

const level = (threshold: string | number, targets = '+27821234567', template = 'SOS {incident}'): LevelDraft => ({
  key: Math.random(),
  threshold,
  targets,
  template,
})

describe('templates', () => {
  it('accepts the placeholders the server knows and escaped braces', () => {
    expect(templateProblem('Incident {incident} in {region} for {minutes} min: {link} {{literal}}')).toBeNull()
  })
  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['x'.repeat(481), 'at most 480'],
    ['hello {foo}', 'Unknown placeholder {foo}'],
    ['hello {}', 'Unknown placeholder {}'],
    ['{minutes:>3}', 'no conversion or format'],
    ['{region!r}', 'no conversion or format'],
    ['open { brace', 'do not balance'],
    ['close } brace', 'do not balance'],
  ])('refuses %j (%s)', (template, why) => {
    expect(templateProblem(template)).toContain(why)
  })
  it('previews with sample values', () => {
    expect(previewTemplate('#{incident} {{x}}')).toBe('#3F2A9C1B {x}')
  })
})

describe('targets', () => {
  it('splits on lines, commas and semicolons and strips separators', () => {
    expect(parseTargets('+27 82 123 4567\n+27-83-000-0000, ;+1 (555) 010-9999\n\n')).toEqual([
      '+27821234567',
      '+27830000000',
      '+15550109999',
    ])
  })
})

describe('levels', () => {
  it('adds a level after the last with a later threshold and its template, up to the limit', () => {
    let levels = [level(5, '+27821234567', 'first {rule}')]
    levels = addLevel(levels)
    expect(levels).toHaveLength(2)
    expect(levels[1]!.threshold).toBe('10')
    expect(levels[1]!.template).toBe('first {rule}')
    expect(levels[1]!.targets).toBe('')
    for (let i = 0; i < 20; i++) levels = addLevel(levels)
    expect(levels).toHaveLength(MAX_LEVELS)
  })

  it('starts a new rule at 5 minutes with the default template', () => {
    const first = newLevel([])
    expect(first.threshold).toBe('5')
    expect(templateProblem(first.template)).toBeNull()
  })

  it('moves, removes and sorts without losing levels', () => {
    const [a, b, c] = [level(5), level(10), level(15)]
    expect(moveLevel([a, b, c], 2, -1)).toEqual([a, c, b])
    expect(moveLevel([a, b, c], 0, -1)).toEqual([a, b, c])
    expect(moveLevel([a, b, c], 2, 1)).toEqual([a, b, c])
    expect(removeLevel([a, b, c], 1)).toEqual([a, c])
    expect(sortLevels([c, level('x'), a])).toEqual([a, c, expect.objectContaining({ threshold: 'x' })])
  })

  it('requires strictly rising thresholds, E.164 targets without repeats, and good templates', () => {
    const v = validateLevels([
      level(10),
      level(10),
      level(0),
      level('2.5'),
      level(20, '0821234567'),
      level(30, '+27821234567\n+27 82 123 4567'),
      level(40, '+27821234567', '{nope}'),
      level(50, ''),
    ])
    expect(v.levels[0]).toEqual({})
    expect(v.levels[1]!.threshold).toContain("more than level 1's 10")
    expect(v.levels[2]!.threshold).toContain('1 to 10080')
    expect(v.levels[3]!.threshold).toContain('Whole minutes')
    expect(v.levels[4]!.targets).toContain('not an E.164')
    expect(v.levels[5]!.targets).toContain('listed twice')
    expect(v.levels[6]!.template).toContain('Unknown placeholder')
    expect(v.levels[7]!.targets).toContain('at least one')
    expect(hasErrors(v)).toBe(true)
    expect(validateLevels([]).general).toContain('at least one level')
  })

  it('converts valid drafts to the API shape, and back', () => {
    const drafts = [level('5', '+27 82 123 4567'), level(15, '+27821234567,+27830000000', 'L{level}')]
    expect(hasErrors(validateLevels(drafts))).toBe(false)
    const levels = toLevels(drafts)
    expect(levels).toEqual([
      { threshold_minutes: 5, targets: ['+27821234567'], template: 'SOS {incident}' },
      { threshold_minutes: 15, targets: ['+27821234567', '+27830000000'], template: 'L{level}' },
    ])
    expect(toLevels(levels.map(draftFromLevel))).toEqual(levels)
  })

  it('finds the level a server problem names', () => {
    expect(levelOfProblem('level 3: target is bad')).toEqual({ index: 2, message: 'target is bad' })
    expect(levelOfProblem('a rule needs at least one level')).toBeNull()
  })
})
