/**
 * Alarm sound made with Web Audio (no audio file to download): two short square-wave tones.
 * Browsers start an AudioContext suspended until the page has had a click or key press, so
 * `blocked` tells the screen to ask for one; `unlock()` is called on the next gesture.
 */
export interface Beeper {
  beep(): void
  unlock(): Promise<void>
  readonly blocked: boolean
}

type AudioContextCtor = new () => AudioContext

export function createBeeper(): Beeper {
  let ctx: AudioContext | null = null

  function context(): AudioContext | null {
    if (ctx) return ctx
    const w = window as unknown as { AudioContext?: AudioContextCtor; webkitAudioContext?: AudioContextCtor }
    const Ctor = w.AudioContext ?? w.webkitAudioContext
    if (!Ctor) return null
    try {
      ctx = new Ctor()
    } catch {
      ctx = null
    }
    return ctx
  }

  function tone(ac: AudioContext, start: number, freq: number, length: number) {
    const osc = ac.createOscillator()
    const gain = ac.createGain()
    osc.type = 'square'
    osc.frequency.setValueAtTime(freq, start)
    gain.gain.setValueAtTime(0.0001, start)
    gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02)
    gain.gain.setValueAtTime(0.25, start + length - 0.03)
    gain.gain.exponentialRampToValueAtTime(0.0001, start + length)
    osc.connect(gain).connect(ac.destination)
    osc.start(start)
    osc.stop(start + length + 0.02)
  }

  return {
    beep() {
      const ac = context()
      if (!ac) return
      if (ac.state === 'suspended') void ac.resume().catch(() => undefined)
      const t = ac.currentTime + 0.01
      tone(ac, t, 880, 0.22)
      tone(ac, t + 0.3, 660, 0.22)
      tone(ac, t + 0.6, 880, 0.22)
    },
    async unlock() {
      const ac = context()
      if (ac && ac.state === 'suspended') await ac.resume().catch(() => undefined)
    },
    get blocked() {
      const ac = context()
      return !!ac && ac.state === 'suspended'
    },
  }
}
