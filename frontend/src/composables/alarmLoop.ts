/**
 * The alarm's timing, apart from sound and Vue so it can be tested with fake timers: while
 * `ringing` and not muted it beeps at once and then every `intervalMs`; a mute lasts
 * `muteMs` (one minute) and then the beeping comes back by itself — there is no mute forever.
 */
export interface AlarmLoopOptions {
  beep: () => void
  intervalMs?: number
  muteMs?: number
  /** Told whenever the muted state changes (the store mirrors it for the screen). */
  onMuteChange?: (mutedUntil: number | null) => void
  now?: () => number
}

export class AlarmLoop {
  readonly intervalMs: number
  readonly muteMs: number
  private ringing = false
  private mutedUntil: number | null = null
  private beepTimer: ReturnType<typeof setInterval> | null = null
  private muteTimer: ReturnType<typeof setTimeout> | null = null
  private readonly opts: AlarmLoopOptions

  constructor(opts: AlarmLoopOptions) {
    this.opts = opts
    this.intervalMs = opts.intervalMs ?? 3000
    this.muteMs = opts.muteMs ?? 60_000
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now()
  }

  get isRinging(): boolean {
    return this.ringing
  }

  get isMuted(): boolean {
    return this.mutedUntil !== null && this.now() < this.mutedUntil
  }

  get isSounding(): boolean {
    return this.beepTimer !== null
  }

  /** Whether something needs attention (an unacknowledged SOS exists). */
  setRinging(ringing: boolean): void {
    this.ringing = ringing
    if (!ringing) this.clearMute()
    this.sync()
  }

  /** Silence for `muteMs`; the alarm comes back afterwards if still needed. */
  mute(): void {
    this.mutedUntil = this.now() + this.muteMs
    if (this.muteTimer !== null) clearTimeout(this.muteTimer)
    this.muteTimer = setTimeout(() => {
      this.muteTimer = null
      this.mutedUntil = null
      this.opts.onMuteChange?.(null)
      this.sync()
    }, this.muteMs)
    this.opts.onMuteChange?.(this.mutedUntil)
    this.sync()
  }

  /** End a mute early (a new SOS does this: a new emergency is never silent). */
  unmute(): void {
    if (this.mutedUntil === null) return
    this.clearMute()
    this.sync()
  }

  dispose(): void {
    this.ringing = false
    this.clearMute()
    this.stopBeeping()
  }

  private clearMute(): void {
    if (this.muteTimer !== null) clearTimeout(this.muteTimer)
    this.muteTimer = null
    if (this.mutedUntil !== null) {
      this.mutedUntil = null
      this.opts.onMuteChange?.(null)
    }
  }

  private sync(): void {
    const shouldSound = this.ringing && !this.isMuted
    if (shouldSound && this.beepTimer === null) {
      this.safeBeep()
      this.beepTimer = setInterval(() => this.safeBeep(), this.intervalMs)
    } else if (!shouldSound) {
      this.stopBeeping()
    }
  }

  private stopBeeping(): void {
    if (this.beepTimer !== null) clearInterval(this.beepTimer)
    this.beepTimer = null
  }

  private safeBeep(): void {
    try {
      this.opts.beep()
    } catch {
      /* a broken audio device must not stop the loop */
    }
  }
}
