import { watch } from 'vue'
import { api } from '@/api/client'
import type { Region, User } from '@/api/types'
import { useAlarm } from '@/stores/alarm'
import { useFeed } from '@/stores/feed'
import { useIncidents } from '@/stores/incidents'
import { useSession } from '@/stores/session'
import { useVehicles } from '@/stores/vehicles'

/** The regions whose feeds a user watches: an operator's or viewer's own, every region for an admin. */
export async function regionsFor(user: User): Promise<string[]> {
  if (user.role !== 'admin') return [...user.regions]
  try {
    const regions = await api.get<Region[]>('/api/regions')
    return regions.map((r) => r.code)
  } catch {
    return [...user.regions]
  }
}

/**
 * Runs the live feed for as long as someone is signed in, on every screen (an admin on the
 * admin pages still hears an SOS). Used once, by App.vue.
 */
export function useLiveFeed(): void {
  const session = useSession()
  const feed = useFeed()
  let generation = 0
  watch(
    () => session.user,
    async (user, previous) => {
      generation += 1
      const mine = generation
      if (!user) {
        feed.stop()
        // Keep the screen's data through a session expiry (the login comes back over it);
        // forget it on a real sign-out or a different user.
        if (!session.expired) {
          useIncidents().clear()
          useVehicles().clear()
          useAlarm().clear()
        }
        return
      }
      if (previous && previous.username !== user.username) {
        useIncidents().clear()
        useVehicles().clear()
        useAlarm().clear()
      }
      const codes = await regionsFor(user)
      if (mine !== generation) return
      feed.start(codes)
    },
    { immediate: true },
  )
}
