import { computed, ref, shallowRef } from 'vue'
import type { Page } from '@/api/types'
import { describeError } from '../problems'

/**
 * One page of a server list at a time: loading and error state, previous/next, and
 * protection against an older answer overwriting a newer one.
 */
export function usePagedList<T>(
  fetchPage: (q: { limit: number; offset: number }) => Promise<Page<T>>,
  pageSize = 25,
) {
  const items = shallowRef<T[]>([])
  const total = ref(0)
  const offset = ref(0)
  const limit = ref(pageSize)
  const loading = ref(false)
  const error = ref<string | null>(null)
  const loaded = ref(false)
  let seq = 0

  async function load(at: number = offset.value): Promise<void> {
    const mine = ++seq
    loading.value = true
    error.value = null
    try {
      const page = await fetchPage({ limit: limit.value, offset: Math.max(0, at) })
      if (mine !== seq) return
      // A page past the end (after deletions): step back to the last page that exists.
      if (page.items.length === 0 && page.total > 0 && at > 0) {
        const last = Math.max(0, Math.floor((page.total - 1) / limit.value) * limit.value)
        if (last < at) return load(last)
      }
      items.value = page.items
      total.value = page.total
      offset.value = page.offset
      loaded.value = true
    } catch (e) {
      if (mine !== seq) return
      error.value = describeError(e).message
    } finally {
      if (mine === seq) loading.value = false
    }
  }

  const hasPrev = computed(() => offset.value > 0)
  const hasNext = computed(() => offset.value + items.value.length < total.value)

  return {
    items,
    total,
    offset,
    limit,
    loading,
    error,
    loaded,
    hasPrev,
    hasNext,
    reload: () => load(offset.value),
    first: () => load(0),
    next: () => (hasNext.value ? load(offset.value + limit.value) : Promise.resolve()),
    prev: () => (hasPrev.value ? load(Math.max(0, offset.value - limit.value)) : Promise.resolve()),
    /** Replace one item in place (after an action answered with the updated object). */
    replace(match: (item: T) => boolean, updated: T): void {
      items.value = items.value.map((i) => (match(i) ? updated : i))
    },
  }
}

export type PagedList<T> = ReturnType<typeof usePagedList<T>>
