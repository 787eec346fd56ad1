import { describe, expect, it, vi } from 'vitest'
import { ApiError } from '@/api/client'
import type { Page } from '@/api/types'
import { usePagedList } from './usePagedList'

function deferred<T>() {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

const pageOf = (n: number, offset: number, limit: number, total: number): Page<number> => ({
  items: Array.from({ length: Math.max(0, Math.min(limit, total - offset)) }, (_, i) => n * 1000 + offset + i),
  total,
  limit,
  offset,
})

describe('usePagedList', () => {
  it('pages forward and back and knows where the ends are', async () => {
    const fetch = vi.fn(async (q: { limit: number; offset: number }) => pageOf(0, q.offset, q.limit, 25))
    const list = usePagedList(fetch, 10)
    await list.first()
    expect(list.items.value).toHaveLength(10)
    expect(list.hasPrev.value).toBe(false)
    expect(list.hasNext.value).toBe(true)
    await list.next()
    await list.next()
    expect(list.offset.value).toBe(20)
    expect(list.items.value).toHaveLength(5)
    expect(list.hasNext.value).toBe(false)
    await list.next()
    expect(fetch).toHaveBeenCalledTimes(3)
    await list.prev()
    expect(list.offset.value).toBe(10)
  })

  it('ignores an older answer that arrives after a newer one', async () => {
    const slow = deferred<Page<number>>()
    const fetch = vi
      .fn<(q: { limit: number; offset: number }) => Promise<Page<number>>>()
      .mockReturnValueOnce(slow.promise)
      .mockResolvedValueOnce(pageOf(2, 0, 10, 3))
    const list = usePagedList(fetch, 10)
    const first = list.first()
    await list.reload()
    slow.resolve(pageOf(1, 0, 10, 3))
    await first
    expect(list.items.value).toEqual([2000, 2001, 2002])
    expect(list.loading.value).toBe(false)
  })

  it('steps back when the page it was on has emptied', async () => {
    let total = 21
    const list = usePagedList(async (q) => pageOf(0, q.offset, q.limit, total), 10)
    await list.first()
    await list.next()
    await list.next()
    expect(list.offset.value).toBe(20)
    total = 20
    await list.reload()
    expect(list.offset.value).toBe(10)
    expect(list.items.value).toHaveLength(10)
  })

  it('keeps the items it had and says what failed', async () => {
    const fetch = vi
      .fn<(q: { limit: number; offset: number }) => Promise<Page<number>>>()
      .mockResolvedValueOnce(pageOf(0, 0, 10, 2))
      .mockRejectedValueOnce(new ApiError(403, { status: 403, detail: 'admins only' }))
    const list = usePagedList(fetch, 10)
    await list.first()
    await list.reload()
    expect(list.error.value).toBe('admins only')
    expect(list.items.value).toEqual([0, 1])
  })
})
