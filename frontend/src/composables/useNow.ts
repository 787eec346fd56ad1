import { onScopeDispose, ref, type Ref } from 'vue'

/**
 * One shared clock that ticks every second while anything uses it (ages counting up, the
 * feed-down banner). It is a timer, not a request: nothing is polled.
 */
const now = ref(Date.now())
let users = 0
let timer: ReturnType<typeof setInterval> | null = null

export function useNow(): Readonly<Ref<number>> {
  users += 1
  if (timer === null) {
    now.value = Date.now()
    timer = setInterval(() => {
      now.value = Date.now()
    }, 1000)
  }
  onScopeDispose(() => {
    users -= 1
    if (users <= 0 && timer !== null) {
      clearInterval(timer)
      timer = null
      users = 0
    }
  })
  return now
}
