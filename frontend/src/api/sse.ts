/**
 * Server-Sent Events over `fetch`, shaped like an EventSource (what the feed store needs of
 * one). Why not EventSource itself: its API hides the comment heartbeats the server sends
 * every 15 s, so a connection that died silently (a weak rural link, a proxy that keeps the
 * socket half-open) would look "live" for ever. Here every byte counts as a sign of life, and
 * `idleTimeoutMs` without any ends the connection so the store reconnects. It also knows the
 * HTTP status of a refused stream (401: the session ran out).
 *
 * It never reconnects by itself: the feed store does, with backoff and the last event id.
 */
export interface SseSourceOptions {
  /** Sent as the `Last-Event-ID` header. */
  lastEventId?: string | null
  /** No bytes (not even a heartbeat) for this long = dead connection (default 35 s: two missed 15 s heartbeats and a margin). */
  idleTimeoutMs?: number
  fetchImpl?: typeof fetch
}

type Listener = (ev: MessageEvent) => void

export class SseSource {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSED = 2

  readyState = SseSource.CONNECTING
  /** HTTP status of the response (0 until there is one, or on a network error). */
  status = 0
  onopen: ((this: EventSource, ev: Event) => unknown) | null = null
  onerror: ((this: EventSource, ev: Event) => unknown) | null = null
  readonly url: string
  private readonly listeners = new Map<string, Listener[]>()
  private readonly abort = new AbortController()
  private readonly idleTimeoutMs: number
  private idleTimer: ReturnType<typeof setTimeout> | null = null
  private lastEventId: string

  constructor(url: string, options: SseSourceOptions = {}) {
    this.url = url
    this.idleTimeoutMs = options.idleTimeoutMs ?? 35_000
    this.lastEventId = options.lastEventId ?? ''
    void this.run(options.fetchImpl ?? fetch.bind(globalThis))
  }

  addEventListener(type: string, listener: Listener): void {
    const list = this.listeners.get(type) ?? []
    list.push(listener)
    this.listeners.set(type, list)
  }

  close(): void {
    if (this.readyState === SseSource.CLOSED) return
    this.readyState = SseSource.CLOSED
    this.clearIdle()
    this.abort.abort()
  }

  private fail(): void {
    if (this.readyState === SseSource.CLOSED) return
    this.close()
    this.onerror?.call(this as unknown as EventSource, new Event('error'))
  }

  private clearIdle(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = null
  }

  private alive(): void {
    this.clearIdle()
    this.idleTimer = setTimeout(() => this.fail(), this.idleTimeoutMs)
  }

  private async run(fetchImpl: typeof fetch): Promise<void> {
    const headers: Record<string, string> = { Accept: 'text/event-stream' }
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId
    try {
      this.alive()
      const response = await fetchImpl(this.url, {
        headers,
        credentials: 'same-origin',
        cache: 'no-store',
        signal: this.abort.signal,
      })
      this.status = response.status
      const type = response.headers.get('Content-Type') ?? ''
      if (!response.ok || !response.body || !type.includes('text/event-stream')) {
        this.fail()
        return
      }
      if (this.readyState === SseSource.CLOSED) return
      this.readyState = SseSource.OPEN
      this.alive()
      this.onopen?.call(this as unknown as EventSource, new Event('open'))
      await this.read(response.body)
      // The server ended the stream: as good as an error (the store reconnects).
      this.fail()
    } catch {
      this.fail()
    }
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader()
    const decoder = new TextDecoder()
    let buffer = ''
    let eventType = ''
    let data: string[] = []
    for (;;) {
      const { value, done } = await reader.read()
      if (done || this.readyState === SseSource.CLOSED) return
      this.alive()
      buffer += decoder.decode(value, { stream: true })
      let at: number
      while ((at = buffer.search(/\r\n|\r|\n/)) >= 0) {
        // A lone \r at the very end may be the first half of \r\n: wait for more.
        if (buffer[at] === '\r' && at === buffer.length - 1) break
        const line = buffer.slice(0, at)
        buffer = buffer.slice(at + (buffer.startsWith('\r\n', at) ? 2 : 1))
        if (line === '') {
          if (data.length) this.dispatch(eventType || 'message', data.join('\n'))
          eventType = ''
          data = []
          continue
        }
        if (line.startsWith(':')) continue // comment: a heartbeat, already counted as life
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        let value = colon < 0 ? '' : line.slice(colon + 1)
        if (value.startsWith(' ')) value = value.slice(1)
        if (field === 'event') eventType = value
        else if (field === 'data') data.push(value)
        else if (field === 'id' && !value.includes('\0')) this.lastEventId = value
        // `retry` is ignored: the store owns the reconnect timing.
      }
    }
  }

  private dispatch(type: string, data: string): void {
    if (this.readyState === SseSource.CLOSED) return
    const ev = new MessageEvent(type, { data, lastEventId: this.lastEventId })
    for (const listener of this.listeners.get(type) ?? []) listener(ev)
  }
}
