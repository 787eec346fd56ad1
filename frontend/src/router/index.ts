import { createRouter, createWebHistory, type Router, type RouteLocationNormalized } from 'vue-router'
import { onUnauthorized } from '@/api/client'
import { useSession } from '@/stores/session'
import { adminRoutes } from '@/views/admin/routes'
import { safeRedirect } from '@/router/redirect'
import MonitorView from '@/views/MonitorView.vue'
import LoginView from '@/views/LoginView.vue'

declare module 'vue-router' {
  interface RouteMeta {
    /** Reachable without a session. */
    public?: boolean
    /** Admins only. */
    admin?: boolean
    title?: string
  }
}

export { safeRedirect }

export function createAppRouter(base = import.meta.env.BASE_URL): Router {
  const router = createRouter({
    history: createWebHistory(base),
    routes: [
      { path: '/login', name: 'login', component: LoginView, meta: { public: true, title: 'Sign in' } },
      // The map and the incident panel; the detail is a route of the same view, so the map stays.
      { path: '/', name: 'monitor', component: MonitorView },
      { path: '/incidents/:id', name: 'incident', component: MonitorView },
      {
        path: '/admin',
        component: () => import('@/views/admin/AdminLayout.vue'),
        children: adminRoutes,
        meta: { admin: true, title: 'Administration' },
      },
      { path: '/:pathMatch(.*)*', redirect: '/' },
    ],
  })
  router.beforeEach(async (to) => guard(to))
  return router
}

/** Where a navigation may go: signed-out users to the login (remembering where they were going), non-admins out of /admin. */
export async function guard(to: RouteLocationNormalized) {
  const session = useSession()
  if (!session.loaded) {
    try {
      await session.load()
    } catch {
      /* shown by the login */
    }
  }
  if (to.meta.public) {
    if (to.name === 'login' && session.user) return safeRedirect(to.query.redirect)
    return true
  }
  if (!session.user) return { name: 'login', query: to.fullPath === '/' ? {} : { redirect: to.fullPath } }
  if (to.matched.some((r) => r.meta.admin) && !session.isAdmin) return { name: 'monitor' }
  return true
}


/** On any 401 the session is over: show the login, and come back here afterwards. */
export function installSessionExpiry(router: Router): () => void {
  return onUnauthorized(() => {
    const session = useSession()
    session.expire()
    const current = router.currentRoute.value
    if (current.name === 'login') return
    void router.replace({ name: 'login', query: { redirect: current.fullPath } })
  })
}
