import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, ApiError } from '@/api/client'
import type { LoginResponse, Role, User } from '@/api/types'

/** Who is signed in. The session itself is the HttpOnly cookie; this store only mirrors it. */
export const useSession = defineStore('session', () => {
  const user = ref<User | null>(null)
  /** `load()` has answered at least once (the router waits for it before deciding). */
  const loaded = ref(false)
  /** The session ran out while someone was signed in (the login says so). */
  const expired = ref(false)

  const isAdmin = computed(() => user.value?.role === 'admin')
  const canAct = computed(() => !!user.value && user.value.role !== 'viewer')

  function setUser(value: { username: string; role: string; regions: string[]; id?: string } | null) {
    user.value = value ? { id: value.id, username: value.username, role: value.role as Role, regions: [...value.regions] } : null
  }

  async function login(username: string, password: string): Promise<User> {
    const res = await api.post<LoginResponse>('/api/auth/login', { username, password })
    setUser(res)
    expired.value = false
    loaded.value = true
    return user.value as User
  }

  async function load(): Promise<User | null> {
    try {
      setUser(await api.get<User>('/api/auth/me'))
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setUser(null)
      else if (!loaded.value) setUser(null)
      // Other failures (server unreachable) keep whatever we knew: the feed shows the outage.
      if (!(err instanceof ApiError && (err.status === 401 || err.status === 0))) throw err
    } finally {
      loaded.value = true
    }
    return user.value
  }

  async function logout(): Promise<void> {
    try {
      await api.post('/api/auth/logout')
    } catch {
      /* the cookie may already be gone; signing out locally is what matters */
    } finally {
      setUser(null)
      expired.value = false
    }
  }

  /** Called by the API client on a 401: the session is gone. */
  function expire(): void {
    if (user.value) expired.value = true
    setUser(null)
    loaded.value = true
  }

  return { user, loaded, expired, isAdmin, canAct, login, load, logout, expire }
})
