import { reactive } from 'vue'

export interface ConfirmOptions {
  title: string
  message: string
  confirmLabel: string
  /** Destructive: the confirm button is styled as a danger. */
  danger?: boolean
}

export interface ConfirmState extends ConfirmOptions {
  open: boolean
  resolve: ((ok: boolean) => void) | null
}

/** `if (await confirm.ask({...}))` — a promise-based confirmation for destructive actions. */
export function useConfirm() {
  const state = reactive<ConfirmState>({
    open: false,
    title: '',
    message: '',
    confirmLabel: 'Confirm',
    danger: false,
    resolve: null,
  })

  function ask(options: ConfirmOptions): Promise<boolean> {
    state.resolve?.(false)
    Object.assign(state, { danger: false, ...options, open: true })
    return new Promise<boolean>((resolve) => {
      state.resolve = resolve
    })
  }

  function answer(ok: boolean): void {
    const resolve = state.resolve
    state.open = false
    state.resolve = null
    resolve?.(ok)
  }

  return { state, ask, answer }
}
