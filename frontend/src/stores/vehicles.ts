import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '@/api/client'
import type { Page, Vehicle, VehiclePositionEvent } from '@/api/types'

/** Patrol vehicles and their last positions: the REST list, then `vehicle.position` events. */
export const useVehicles = defineStore('vehicles', () => {
  const byId = ref<Record<string, Vehicle>>({})
  const loaded = ref(false)

  const onMap = computed(() => Object.values(byId.value).filter((v) => v.active && v.lat != null && v.lng != null))

  async function load(): Promise<void> {
    const items: Vehicle[] = []
    for (let offset = 0; offset < 2000; offset += 500) {
      const page = await api.get<Page<Vehicle>>('/api/vehicles', { limit: 500, offset })
      items.push(...page.items)
      if (items.length >= page.total || page.items.length === 0) break
    }
    const next: Record<string, Vehicle> = {}
    for (const v of items) next[v.id] = v
    byId.value = next
    loaded.value = true
  }

  function applyPosition(event: VehiclePositionEvent): void {
    const current = byId.value[event.id]
    const base: Vehicle = current ?? {
      id: event.id, callsign: event.callsign, region: event.region, active: true, available: true,
      lat: null, lng: null, speed: null, heading: null, last_ping_at: null, age_seconds: null, created_at: event.ts,
    }
    byId.value[event.id] = {
      ...base,
      callsign: event.callsign,
      lat: event.lat,
      lng: event.lng,
      speed: event.speed,
      heading: event.heading,
      last_ping_at: event.ts,
      age_seconds: 0,
    }
  }

  function clear(): void {
    byId.value = {}
    loaded.value = false
  }

  return { byId, onMap, loaded, load, applyPosition, clear }
})
