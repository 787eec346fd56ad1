import type { IncidentStatus } from '@/api/types'

/** How each status reads: a word and a symbol, so colour is never the only signal. */
export const STATUS_INFO: Record<IncidentStatus, { label: string; icon: string; rank: number }> = {
  open: { label: 'Unacknowledged', icon: '⚠', rank: 0 },
  acknowledged: { label: 'Acknowledged', icon: '✓', rank: 1 },
  dispatched: { label: 'Dispatched', icon: '➤', rank: 2 },
  resolved: { label: 'Resolved', icon: '●', rank: 3 },
  cancelled: { label: 'Cancelled', icon: '✕', rank: 3 },
}

export function statusInfo(status: string): { label: string; icon: string; rank: number } {
  return STATUS_INFO[status as IncidentStatus] ?? { label: status, icon: '?', rank: 0 }
}

export function isClosed(status: string): boolean {
  return status === 'resolved' || status === 'cancelled'
}

/** What an operator may do next, as the backend's lifecycle allows it. */
export function allowedActions(status: string): { acknowledge: boolean; dispatch: boolean; resolve: boolean; cancel: boolean } {
  return {
    acknowledge: status === 'open',
    dispatch: status === 'open' || status === 'acknowledged' || status === 'dispatched',
    resolve: status === 'acknowledged' || status === 'dispatched',
    cancel: status === 'open' || status === 'acknowledged' || status === 'dispatched',
  }
}
