import { ref } from 'vue'
import { describeError } from '../problems'

/**
 * Run one admin action at a time: a busy flag (to disable buttons), the last error and a
 * short success notice for a polite live region.
 */
export function useAction() {
  const busy = ref(false)
  const error = ref<string | null>(null)
  const notice = ref<string | null>(null)

  async function run<R>(action: () => Promise<R>, success?: string | ((r: R) => string)): Promise<R | undefined> {
    if (busy.value) return undefined
    busy.value = true
    error.value = null
    notice.value = null
    try {
      const result = await action()
      if (success) notice.value = typeof success === 'function' ? success(result) : success
      return result
    } catch (e) {
      error.value = describeError(e).message
      return undefined
    } finally {
      busy.value = false
    }
  }

  return { busy, error, notice, run }
}
