import { ref, shallowRef } from 'vue'
import { regions as regionsApi, type AdminRegion } from '@/api/admin'
import { describeError } from '../problems'

/** The regions for selects and filters (admins see all of them). */
export function useRegions() {
  const regions = shallowRef<AdminRegion[]>([])
  const error = ref<string | null>(null)
  const loading = ref(false)

  async function load(): Promise<void> {
    loading.value = true
    error.value = null
    try {
      regions.value = await regionsApi.list()
    } catch (e) {
      error.value = describeError(e).message
    } finally {
      loading.value = false
    }
  }

  return { regions, error, loading, load }
}
