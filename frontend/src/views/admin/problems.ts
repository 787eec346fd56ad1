import { ApiError } from '@/api/client'

export interface Described {
  /** One sentence for the form or screen. */
  message: string
  /** Per-field messages from a 400's `errors` (key → message). */
  fields: Record<string, string>
  status: number | null
}

interface FieldError {
  key?: unknown
  message?: unknown
}

/** What went wrong, in words an admin can act on, from an ApiError's problem details. */
export function describeError(err: unknown): Described {
  if (err instanceof ApiError) {
    const p = err.problem
    const fields: Record<string, string> = {}
    const raw = p?.errors
    if (Array.isArray(raw)) {
      for (const e of raw as FieldError[]) {
        if (typeof e?.key === 'string' && typeof e.message === 'string' && !(e.key in fields)) {
          fields[e.key] = e.message
        }
      }
    }
    const fieldText = Object.entries(fields)
      .map(([k, m]) => `${k}: ${m}`)
      .join('; ')
    // A 400 from the decoder says only "Validation failed for …"; the fields say what.
    const generic = typeof p?.detail === 'string' && p.detail.startsWith('Validation failed')
    let message = (typeof p?.detail === 'string' && p.detail) || err.message || `Request failed (${err.status})`
    if (fieldText) message = generic ? fieldText : `${message} (${fieldText})`
    if (err.status === 0) message = `${message}. Check the connection and try again.`
    if (err.status === 403 && !p?.detail) message = 'Only admins may do this.'
    return { message, fields, status: err.status }
  }
  if (err instanceof Error) {
    const offline = err instanceof TypeError || /fetch|network/i.test(err.message)
    return {
      message: offline ? `Could not reach the server (${err.message}). Check the connection and try again.` : err.message,
      fields: {},
      status: null,
    }
  }
  return { message: String(err), fields: {}, status: null }
}
