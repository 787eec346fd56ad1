import type { EventSourceLike } from '@/stores/feed'

/** An EventSource the tests drive by hand: open it, send frames, fail it. */
export class FakeEventSource implements EventSourceLike {
  static instances: FakeEventSource[] = []
  readyState = 0
  onopen: ((this: EventSource, ev: Event) => unknown) | null = null
  onerror: ((this: EventSource, ev: Event) => unknown) | null = null
  closed = false
  private listeners = new Map<string, ((ev: MessageEvent) => void)[]>()

  constructor(readonly url: string) {
    FakeEventSource.instances.push(this)
  }

  static reset(): void {
    FakeEventSource.instances = []
  }

  static last(): FakeEventSource {
    const last = FakeEventSource.instances[FakeEventSource.instances.length - 1]
    if (!last) throw new Error('no EventSource was created')
    return last
  }

  static forRegion(region: string): FakeEventSource[] {
    return FakeEventSource.instances.filter((s) => new URL(s.url, 'http://x').searchParams.get('region') === region)
  }

  addEventListener(type: string, listener: (ev: MessageEvent) => void): void {
    const list = this.listeners.get(type) ?? []
    list.push(listener)
    this.listeners.set(type, list)
  }

  close(): void {
    this.closed = true
    this.readyState = 2
  }

  open(): void {
    this.readyState = 1
    this.onopen?.call(this as unknown as EventSource, new Event('open'))
  }

  fail(): void {
    this.readyState = 2
    this.onerror?.call(this as unknown as EventSource, new Event('error'))
  }

  emit(type: string, data: unknown, id?: string | number): void {
    const ev = new MessageEvent(type, { data: JSON.stringify(data), lastEventId: id === undefined ? '' : String(id) })
    for (const listener of this.listeners.get(type) ?? []) listener(ev)
  }
}
