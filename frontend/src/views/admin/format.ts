/** Date and duration formatting shared by the admin screens. */

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
})

/** `25 Nov 2026, 14:05:09` in the browser's locale and zone; an em dash for none. */
export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return '—'
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? iso : dateTime.format(d)
}

/** `just now`, `5 min ago`, `3 h ago`, `2 d ago`; `never` for none. */
export function formatAgo(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return 'never'
  const t = new Date(iso).getTime()
  if (Number.isNaN(t)) return iso
  const s = Math.round((now - t) / 1000)
  if (s < 0) return 'in the future'
  if (s < 45) return 'just now'
  const m = Math.round(s / 60)
  if (m < 60) return `${m} min ago`
  const h = Math.round(m / 60)
  if (h < 48) return `${h} h ago`
  return `${Math.round(h / 24)} d ago`
}

/** `1–50 of 123`. */
export function formatRange(offset: number, count: number, total: number): string {
  if (total === 0 || count === 0) return `0 of ${total}`
  return `${offset + 1}–${offset + count} of ${total}`
}
