import { afterEach, describe, expect, it, vi } from 'vitest'
import { SseSource } from '@/api/sse'

/** A streaming response whose chunks the test pushes by hand. */
function streamingFetch(status = 200, type = 'text/event-stream') {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c
    },
  })
  const enc = new TextEncoder()
  const calls: { url: string; init?: RequestInit }[] = []
  const fetchImpl = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
    calls.push({ url: String(url), init })
    init?.signal?.addEventListener('abort', () => {
      try {
        controller.error(new DOMException('aborted', 'AbortError'))
      } catch {
        /* already closed */
      }
    })
    return new Response(body, { status, headers: { 'Content-Type': type } })
  }) as unknown as typeof fetch
  return {
    fetchImpl,
    calls,
    push: (text: string) => controller.enqueue(enc.encode(text)),
    end: () => controller.close(),
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0))

describe('SseSource', () => {
  afterEach(() => vi.useRealTimers())

  it('opens, sends Last-Event-ID and cookies, and parses events split across chunks', async () => {
    const s = streamingFetch()
    const src = new SseSource('/panic/api/stream?region=ZA-LP', { lastEventId: '41', fetchImpl: s.fetchImpl })
    const opened = vi.fn()
    src.onopen = opened
    const got: { type: string; data: string; id: string }[] = []
    for (const type of ['incident.created', 'message']) src.addEventListener(type, (e) => got.push({ type, data: e.data, id: e.lastEventId }))
    await tick()
    expect(opened).toHaveBeenCalled()
    expect(src.readyState).toBe(SseSource.OPEN)
    expect(s.calls[0]!.init?.headers).toMatchObject({ 'Last-Event-ID': '41', Accept: 'text/event-stream' })
    expect(s.calls[0]!.init?.credentials).toBe('same-origin')
    s.push('retry: 3000\n: connected\n\n')
    s.push('id: 42\nevent: incident.cre')
    s.push('ated\ndata: {"id":"a",\ndata: "x":1}\n\n')
    s.push('data: plain\r\n\r\n')
    await tick()
    expect(got).toEqual([
      { type: 'incident.created', data: '{"id":"a",\n"x":1}', id: '42' },
      { type: 'message', data: 'plain', id: '42' },
    ])
    src.close()
  })

  it('a refused stream fails with its HTTP status', async () => {
    const s = streamingFetch(401, 'application/problem+json')
    const src = new SseSource('/x', { fetchImpl: s.fetchImpl })
    const failed = vi.fn()
    src.onerror = failed
    await tick()
    expect(failed).toHaveBeenCalledTimes(1)
    expect(src.status).toBe(401)
    expect(src.readyState).toBe(SseSource.CLOSED)
  })

  it('the server ending the stream is an error (the store reconnects)', async () => {
    const s = streamingFetch()
    const src = new SseSource('/x', { fetchImpl: s.fetchImpl })
    const failed = vi.fn()
    src.onerror = failed
    await tick()
    s.end()
    await tick()
    expect(failed).toHaveBeenCalledTimes(1)
  })

  it('heartbeats keep it alive; silence longer than the idle timeout ends it', async () => {
    vi.useFakeTimers()
    const s = streamingFetch()
    const src = new SseSource('/x', { fetchImpl: s.fetchImpl, idleTimeoutMs: 45_000 })
    const failed = vi.fn()
    src.onerror = failed
    await vi.advanceTimersByTimeAsync(0)
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(15_000)
      s.push(': keep-alive\n\n')
      await vi.advanceTimersByTimeAsync(0)
    }
    expect(failed).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(45_000)
    expect(failed).toHaveBeenCalledTimes(1)
    expect(src.readyState).toBe(SseSource.CLOSED)
  })

  it('close() stops everything without an error callback', async () => {
    const s = streamingFetch()
    const src = new SseSource('/x', { fetchImpl: s.fetchImpl })
    const failed = vi.fn()
    const got = vi.fn()
    src.onerror = failed
    src.addEventListener('message', got)
    await tick()
    src.close()
    await tick()
    expect(failed).not.toHaveBeenCalled()
    expect(src.readyState).toBe(SseSource.CLOSED)
  })

  it('a network error fails with status 0', async () => {
    const fetchImpl = vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))) as unknown as typeof fetch
    const src = new SseSource('/x', { fetchImpl })
    const failed = vi.fn()
    src.onerror = failed
    await tick()
    expect(failed).toHaveBeenCalled()
    expect(src.status).toBe(0)
  })
})
