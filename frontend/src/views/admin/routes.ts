import type { RouteRecordRaw } from 'vue-router'

/**
 * Children of `/admin`. Every component is a lazy import so that importing this
 * module from the router costs the operator bundle nothing.
 */
export const adminRoutes: RouteRecordRaw[] = [
  { path: '', redirect: { name: 'admin-devices' } },
  {
    path: 'devices',
    name: 'admin-devices',
    component: () => import('./DevicesView.vue'),
    meta: { admin: true, title: 'Devices' },
  },
  {
    path: 'vehicles',
    name: 'admin-vehicles',
    component: () => import('./VehiclesView.vue'),
    meta: { admin: true, title: 'Vehicles' },
  },
  {
    path: 'users',
    name: 'admin-users',
    component: () => import('./UsersView.vue'),
    meta: { admin: true, title: 'Users and roles' },
  },
  {
    path: 'regions',
    name: 'admin-regions',
    component: () => import('./RegionsView.vue'),
    meta: { admin: true, title: 'Regions' },
  },
  {
    path: 'escalation',
    name: 'admin-escalation',
    component: () => import('./EscalationView.vue'),
    meta: { admin: true, title: 'Escalation rules' },
  },
  {
    path: 'sms',
    name: 'admin-sms',
    component: () => import('./SmsView.vue'),
    meta: { admin: true, title: 'Outbound SMS' },
  },
]
