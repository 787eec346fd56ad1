/**
 * The escalation-rule editor's rules, mirroring the server's checks (backend
 * `naboom/escalation/service.py` check_levels and `templates.py` check_template) so an admin
 * sees what is wrong before saving; the server still has the last word.
 */
import type { EscalationLevel } from '@/api/admin'
import { isE164, normalizePhone } from './phone'

export const MAX_LEVELS = 10
export const MAX_TARGETS = 50
export const MAX_THRESHOLD_MINUTES = 10080
export const MAX_TEMPLATE_CHARS = 480

/** The placeholders a template may use, and what each becomes. */
export const PLACEHOLDERS: ReadonlyArray<{ name: string; meaning: string; sample: string }> = [
  { name: 'incident', meaning: "the incident's short reference", sample: '3F2A9C1B' },
  { name: 'region', meaning: "the region's name", sample: 'Limpopo North' },
  { name: 'message', meaning: "the device's message", sample: 'SOS' },
  { name: 'minutes', meaning: 'whole minutes since the incident was received', sample: '15' },
  { name: 'level', meaning: "the level's number (1 is the first)", sample: '2' },
  { name: 'rule', meaning: "the rule's name", sample: 'Wake the duty manager' },
  { name: 'time', meaning: "when it was received, in the region's timezone", sample: '25 Nov 14:05 SAST' },
  { name: 'place', meaning: "latitude,longitude, or 'location unknown'", sample: '-23.90450,29.46890' },
  { name: 'map', meaning: "a map link to the place, or 'location unknown'", sample: 'https://maps.google.com/?q=-23.90450,29.46890' },
  { name: 'link', meaning: 'the incident in the monitor', sample: 'https://naboom.example/monitor/incidents/3f2a9c1b' },
]
const KNOWN = new Set(PLACEHOLDERS.map((p) => p.name))

export const DEFAULT_TEMPLATE = 'Incident {incident} in {region} unacknowledged for {minutes} min: {link}'


/** Targets as typed (one per line, or separated by commas or semicolons) → normalised numbers. */
export function parseTargets(text: string): string[] {
  return text
    .split(/[\n,;]+/)
    .map((t) => normalizePhone(t.trim()))
    .filter((t) => t.length > 0)
}

type Field = { kind: 'text'; text: string } | { kind: 'field'; body: string }

/** Python's str.Formatter parse, enough to find fields; throws on unbalanced braces. */
function parseFormat(template: string): Field[] {
  const out: Field[] = []
  let text = ''
  for (let i = 0; i < template.length; i++) {
    const c = template[i]
    if (c === '{') {
      if (template[i + 1] === '{') {
        text += '{'
        i++
        continue
      }
      const end = template.indexOf('}', i + 1)
      const nested = template.indexOf('{', i + 1)
      if (end < 0) throw new Error("a '{' is never closed")
      if (nested >= 0 && nested < end) throw new Error('placeholders cannot be nested')
      if (text) out.push({ kind: 'text', text })
      text = ''
      out.push({ kind: 'field', body: template.slice(i + 1, end) })
      i = end
    } else if (c === '}') {
      if (template[i + 1] === '}') {
        text += '}'
        i++
        continue
      }
      throw new Error("a '}' has no opening '{'")
    } else {
      text += c
    }
  }
  if (text) out.push({ kind: 'text', text })
  return out
}

/** Why the server would refuse this template, or null. */
export function templateProblem(template: string): string | null {
  if (!template.trim()) return 'The template is empty.'
  if (template.length > MAX_TEMPLATE_CHARS)
    return `The template has ${template.length} characters; at most ${MAX_TEMPLATE_CHARS}.`
  if (template.includes('\u0000')) return 'The template must not contain a NUL character.'
  let fields: Field[]
  try {
    fields = parseFormat(template)
  } catch (e) {
    return `The braces do not balance (${(e as Error).message}); write {{ and }} for literal braces.`
  }
  for (const f of fields) {
    if (f.kind !== 'field') continue
    const m = /^([^!:]*)([!:].*)?$/.exec(f.body)
    const name = m?.[1] ?? f.body
    if (!KNOWN.has(name)) {
      return `Unknown placeholder {${name}}; use ${PLACEHOLDERS.map((p) => `{${p.name}}`).join(', ')}.`
    }
    if (m?.[2]) return `Placeholder {${name}} takes no conversion or format (write it as {${name}}).`
  }
  return null
}

/** The template with sample values, to show roughly what a responder reads. */
export function previewTemplate(template: string, values?: Partial<Record<string, string>>): string {
  try {
    return parseFormat(template)
      .map((f) => {
        if (f.kind === 'text') return f.text
        const sample = PLACEHOLDERS.find((p) => p.name === f.body)?.sample
        return values?.[f.body] ?? sample ?? `{${f.body}}`
      })
      .join('')
  } catch {
    return template
  }
}

// ---------------------------------------------------------------- the editor's levels

/** One level as the form holds it: strings, exactly what the inputs show. */
export interface LevelDraft {
  /** Stable identity for v-for keys across reordering. */
  key: number
  /** A number input's v-model gives a number, or the raw string when it is not one. */
  threshold: string | number
  targets: string
  template: string
}

export type LevelErrors = Partial<Record<'threshold' | 'targets' | 'template', string>>

let nextKey = 1

/** The level's threshold as whole minutes, or NaN when it is not a whole number. */
export function minutesOf(level: Pick<LevelDraft, 'threshold'>): number {
  const raw = String(level.threshold).trim()
  return /^\d+$/.test(raw) ? Number.parseInt(raw, 10) : NaN
}

export function draftFromLevel(level: EscalationLevel): LevelDraft {
  return {
    key: nextKey++,
    threshold: String(level.threshold_minutes),
    targets: level.targets.join('\n'),
    template: level.template,
  }
}

/** A new level after the given ones: a later threshold, the previous level's template. */
export function newLevel(after: readonly LevelDraft[]): LevelDraft {
  const last = after[after.length - 1]
  const lastMinutes = last ? minutesOf(last) : NaN
  const threshold = Number.isFinite(lastMinutes) ? Math.min(MAX_THRESHOLD_MINUTES, lastMinutes * 2) : 5
  return { key: nextKey++, threshold: String(threshold), targets: '', template: last?.template ?? DEFAULT_TEMPLATE }
}

export function addLevel(levels: readonly LevelDraft[]): LevelDraft[] {
  if (levels.length >= MAX_LEVELS) return [...levels]
  return [...levels, newLevel(levels)]
}

export function removeLevel(levels: readonly LevelDraft[], index: number): LevelDraft[] {
  return levels.filter((_, i) => i !== index)
}

/** Swap a level with its neighbour (`-1` up, `+1` down); out of range, nothing moves. */
export function moveLevel(levels: readonly LevelDraft[], index: number, direction: -1 | 1): LevelDraft[] {
  const to = index + direction
  const out = [...levels]
  if (index < 0 || index >= out.length || to < 0 || to >= out.length) return out
  ;[out[index], out[to]] = [out[to]!, out[index]!]
  return out
}

/** Levels ordered by their threshold (what "fire in order" needs); unparsable ones last. */
export function sortLevels(levels: readonly LevelDraft[]): LevelDraft[] {
  const minutes = (l: LevelDraft) => {
    const n = minutesOf(l)
    return Number.isFinite(n) ? n : Number.POSITIVE_INFINITY
  }
  return [...levels].sort((a, b) => minutes(a) - minutes(b))
}

/** What is wrong with each level (same index) and with the list as a whole. */
export function validateLevels(levels: readonly LevelDraft[]): { levels: LevelErrors[]; general: string | null } {
  let general: string | null = null
  if (levels.length === 0) general = 'A rule needs at least one level.'
  else if (levels.length > MAX_LEVELS) general = `A rule has at most ${MAX_LEVELS} levels.`
  let previous = 0
  const errors = levels.map((level, i) => {
    const e: LevelErrors = {}
    const minutes = minutesOf(level)
    if (!Number.isFinite(minutes) || minutes < 1 || minutes > MAX_THRESHOLD_MINUTES) {
      e.threshold = `Whole minutes, 1 to ${MAX_THRESHOLD_MINUTES} (a week).`
    } else {
      if (minutes <= previous) {
        e.threshold = `Must be more than level ${i}'s ${previous} min: levels fire in order.`
      }
      previous = Math.max(previous, minutes)
    }
    const targets = parseTargets(level.targets)
    if (targets.length === 0) e.targets = 'List at least one phone number.'
    else if (targets.length > MAX_TARGETS) e.targets = `At most ${MAX_TARGETS} numbers, not ${targets.length}.`
    else {
      const bad = targets.find((t) => !isE164(t))
      const seen = new Set<string>()
      const dup = targets.find((t) => (seen.has(t) ? true : (seen.add(t), false)))
      if (bad) e.targets = `${bad} is not an E.164 number: + and the country code, 8 to 15 digits (such as +27821234567).`
      else if (dup) e.targets = `${dup} is listed twice.`
    }
    const t = templateProblem(level.template)
    if (t) e.template = t
    return e
  })
  return { levels: errors, general }
}

export function hasErrors(v: { levels: LevelErrors[]; general: string | null }): boolean {
  return v.general !== null || v.levels.some((e) => Object.keys(e).length > 0)
}

/** The drafts as the API takes them (call after validateLevels found nothing). */
export function toLevels(levels: readonly LevelDraft[]): EscalationLevel[] {
  return levels.map((l) => ({
    threshold_minutes: minutesOf(l),
    targets: parseTargets(l.targets),
    template: l.template,
  }))
}

/** `level 2: …` from the server → index 1 and the message, to show it at that level. */
export function levelOfProblem(detail: string): { index: number; message: string } | null {
  const m = /^level (\d+): (.*)$/s.exec(detail)
  if (!m) return null
  return { index: Number.parseInt(m[1]!, 10) - 1, message: m[2]! }
}
