import { mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { nextTick } from 'vue'
import ConnectionIndicator from '@/components/ConnectionIndicator.vue'
import FeedDownBanner from '@/components/FeedDownBanner.vue'
import { useFeed } from '@/stores/feed'
import { FakeEventSource } from '@/test/fakeEventSource'
import { mockFetch } from '@/test/fetchMock'

describe('connection state on screen', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    FakeEventSource.reset()
    vi.useFakeTimers()
    mockFetch({
      'GET /api/incidents': { body: { items: [], total: 0, limit: 1, offset: 0 } },
      'GET /api/vehicles': { body: { items: [], total: 0, limit: 1, offset: 0 } },
    })
  })
  afterEach(() => {
    useFeed().stop()
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })

  it('says live / reconnecting / offline, and shows the banner only after 5 s down', async () => {
    const feed = useFeed()
    feed.configure({ createSource: (url) => new FakeEventSource(url), random: () => 0 })
    feed.start(['ZA-LP'])
    const ind = mount(ConnectionIndicator)
    const banner = mount(FeedDownBanner)
    FakeEventSource.last().open()
    await nextTick()
    expect(ind.get('[data-testid="connection-state"]').attributes('data-state')).toBe('live')
    expect(ind.text()).toContain('Live')

    FakeEventSource.last().fail()
    await nextTick()
    expect(ind.get('[data-testid="connection-state"]').attributes('data-state')).toBe('reconnecting')
    expect(ind.text()).toContain('Reconnecting…')
    expect(banner.find('[data-testid="feed-down-banner"]').exists()).toBe(false)
    vi.advanceTimersByTime(6000)
    await nextTick()
    expect(banner.find('[data-testid="feed-down-banner"]').exists()).toBe(true)

    feed.setOnline(false)
    await nextTick()
    expect(ind.get('[data-testid="connection-state"]').attributes('data-state')).toBe('offline')
    expect(ind.text()).toContain('Offline')
    ind.unmount()
    banner.unmount()
  })
})
