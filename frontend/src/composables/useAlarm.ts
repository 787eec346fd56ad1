import { onScopeDispose, watch } from 'vue'
import { AlarmLoop } from '@/composables/alarmLoop'
import { createBeeper, type Beeper } from '@/composables/beeper'
import { useAlarm } from '@/stores/alarm'
import { useIncidents } from '@/stores/incidents'

const BASE_TITLE = 'Naboom control room'

/**
 * The audible alarm and the flashing tab title, for as long as an SOS is unacknowledged.
 * Used once, by App.vue.
 */
export function useAlarmSound(beeper: Beeper = createBeeper()): void {
  const alarm = useAlarm()
  const incidents = useIncidents()
  const loop = new AlarmLoop({
    beep: () => {
      beeper.beep()
      alarm.audioBlocked = beeper.blocked
    },
    onMuteChange: (until) => {
      alarm.mutedUntil = until
    },
  })
  alarm.bind({ mute: () => loop.mute(), unmute: () => loop.unmute() })

  watch(
    () => alarm.ringing,
    (ringing) => loop.setRinging(ringing),
    { immediate: true },
  )

  // Browsers keep audio off until the page gets a gesture; the first one turns it on.
  const unlock = () => {
    void beeper.unlock().then(() => {
      alarm.audioBlocked = beeper.blocked
    })
  }
  window.addEventListener('pointerdown', unlock, true)
  window.addEventListener('keydown', unlock, true)

  // Flashing tab title while anything is unacknowledged (muted or not: muting is for the ears).
  let flash: ReturnType<typeof setInterval> | null = null
  let on = false
  watch(
    () => incidents.unacknowledged.length,
    (count) => {
      if (count > 0 && flash === null) {
        flash = setInterval(() => {
          on = !on
          document.title = on ? `⚠ SOS (${incidents.unacknowledged.length}) — unacknowledged` : BASE_TITLE
        }, 1000)
        document.title = `⚠ SOS (${count}) — unacknowledged`
      } else if (count === 0 && flash !== null) {
        clearInterval(flash)
        flash = null
        document.title = BASE_TITLE
      }
    },
    { immediate: true },
  )

  onScopeDispose(() => {
    loop.dispose()
    alarm.bind(null)
    if (flash !== null) clearInterval(flash)
    document.title = BASE_TITLE
    window.removeEventListener('pointerdown', unlock, true)
    window.removeEventListener('keydown', unlock, true)
  })
}
