import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AlarmLoop } from '@/composables/alarmLoop'

describe('alarm loop', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  function make() {
    const beep = vi.fn()
    const onMuteChange = vi.fn()
    const loop = new AlarmLoop({ beep, intervalMs: 3000, muteMs: 60_000, onMuteChange })
    return { loop, beep, onMuteChange }
  }

  it('beeps at once and repeats until nothing needs attention', () => {
    const { loop, beep } = make()
    loop.setRinging(true)
    expect(beep).toHaveBeenCalledTimes(1)
    vi.advanceTimersByTime(9000)
    expect(beep).toHaveBeenCalledTimes(4)
    loop.setRinging(false)
    vi.advanceTimersByTime(60_000)
    expect(beep).toHaveBeenCalledTimes(4)
    expect(loop.isSounding).toBe(false)
  })

  it('does not start a second loop when told twice', () => {
    const { loop, beep } = make()
    loop.setRinging(true)
    loop.setRinging(true)
    vi.advanceTimersByTime(3000)
    expect(beep).toHaveBeenCalledTimes(2)
  })

  it('a mute lasts one minute, then the alarm comes back by itself', () => {
    const { loop, beep, onMuteChange } = make()
    loop.setRinging(true)
    loop.mute()
    expect(loop.isMuted).toBe(true)
    expect(onMuteChange).toHaveBeenLastCalledWith(expect.any(Number))
    vi.advanceTimersByTime(59_999)
    expect(beep).toHaveBeenCalledTimes(1)
    vi.advanceTimersByTime(1)
    expect(loop.isMuted).toBe(false)
    expect(onMuteChange).toHaveBeenLastCalledWith(null)
    expect(beep).toHaveBeenCalledTimes(2)
    vi.advanceTimersByTime(3000)
    expect(beep).toHaveBeenCalledTimes(3)
  })

  it('muting again restarts the minute; it never lasts longer than one minute from the last press', () => {
    const { loop, beep } = make()
    loop.setRinging(true)
    loop.mute()
    vi.advanceTimersByTime(30_000)
    loop.mute()
    vi.advanceTimersByTime(59_000)
    expect(beep).toHaveBeenCalledTimes(1)
    vi.advanceTimersByTime(1000)
    expect(beep).toHaveBeenCalledTimes(2)
  })

  it('unmute (a new SOS) brings the sound back at once', () => {
    const { loop, beep } = make()
    loop.setRinging(true)
    loop.mute()
    vi.advanceTimersByTime(10_000)
    loop.unmute()
    expect(beep).toHaveBeenCalledTimes(2)
    expect(loop.isMuted).toBe(false)
  })

  it('when everything is acknowledged the mute is forgotten: the next SOS rings at once', () => {
    const { loop, beep } = make()
    loop.setRinging(true)
    loop.mute()
    loop.setRinging(false)
    expect(loop.isMuted).toBe(false)
    loop.setRinging(true)
    expect(beep).toHaveBeenCalledTimes(2)
  })

  it('a failing beep does not stop the loop', () => {
    const beep = vi.fn(() => {
      throw new Error('no audio device')
    })
    const loop = new AlarmLoop({ beep, intervalMs: 1000 })
    loop.setRinging(true)
    vi.advanceTimersByTime(2000)
    expect(beep).toHaveBeenCalledTimes(3)
    loop.dispose()
  })
})
