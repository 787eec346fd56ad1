import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils'
import { createMemoryHistory, createRouter, RouterView } from 'vue-router'
import { defineComponent, h } from 'vue'
import DevicesView from './DevicesView.vue'
import AdminLayout from './AdminLayout.vue'
import { adminRoutes } from './routes'
import type { Device } from '@/api/admin'
import { fakeBackend, page, problem, REGIONS, reply, settle } from './testing'

const qr = vi.hoisted(() => ({ toDataURL: vi.fn(async (text: string) => `data:image/png;base64,${btoa(text).slice(0, 8)}`) }))
vi.mock('qrcode', () => ({ default: qr, ...qr }))

const SECRET = 'xpyoELTjuymCt7Wts8R0fRrwziqRZDXerZOjgHFa5nY='
const ROTATED = 'R0tAt3dR0tAt3dR0tAt3dR0tAt3dR0tAt3dR0tAt3d='

function device(pid: string, extra: Partial<Device> = {}): Device {
  return {
    id: `id-${pid}`,
    pid,
    region: 'ZA-LP',
    label: null,
    active: true,
    last_seen_at: null,
    last_message: null,
    created_at: '2026-01-01T00:00:00Z',
    keys: [{ kid: 1, state: 'current', grace_until: null, created_at: '2026-01-01T00:00:00Z' }],
    ...extra,
  }
}

describe('DevicesView', () => {
  let backend: ReturnType<typeof fakeBackend>
  let devices: Device[]
  let wrapper: VueWrapper | null = null

  beforeEach(() => {
    qr.toDataURL.mockClear()
    devices = [device('demo-button-1', { label: 'Demo', last_message: 'SOS' })]
    backend = fakeBackend().install()
    backend
      .on('GET', '/api/regions', () => REGIONS)
      .on('GET', '/api/devices', (c) => page(devices, Number(c.query.get('offset') ?? 0), 25))
      .on('POST', '/api/devices', (c) => {
        const body = c.body as { pid: string; region: string; label: string | null }
        if (devices.some((d) => d.pid === body.pid)) return problem(409, `device '${body.pid}' already exists`)
        devices = [...devices, device(body.pid, { region: body.region, label: body.label })]
        return reply(201, { pid: body.pid, kid: 1, secret: SECRET })
      })
  })
  afterEach(() => {
    wrapper?.unmount()
    wrapper = null
    document.body.innerHTML = ''
  })

  async function mountView() {
    wrapper = mount(DevicesView, { attachTo: document.body })
    await settle()
    return wrapper
  }

  async function register(w: VueWrapper, pid: string, region = 'ZA-MP', label = '') {
    await w.get('[data-testid="device-create-pid"]').setValue(pid)
    await w.get('[data-testid="device-create-region"]').setValue(region)
    if (label) await w.get('[data-testid="device-create-label"]').setValue(label)
    await w.get('[data-testid="device-create-submit"]').trigger('click')
    await settle()
  }

  it('lists devices with region, state, last seen and last message', async () => {
    const w = await mountView()
    const row = w.get('[data-testid="device-row"][data-pid="demo-button-1"]')
    expect(row.text()).toContain('Demo')
    expect(row.text()).toContain('ZA-LP')
    expect(row.text()).toContain('Active')
    expect(row.text()).toContain('never')
    expect(row.text()).toContain('SOS')
  })

  it('shows the new secret once, with copy and a QR code of the provisioning JSON, then forgets it', async () => {
    const writeText = vi.fn(async () => {})
    vi.stubGlobal('navigator', { ...navigator, clipboard: { writeText } })
    const w = await mountView()
    await register(w, 'farm-7', 'ZA-MP', 'Kitchen')

    const [call] = backend.find('POST', '/api/devices')
    expect(call!.body).toEqual({ pid: 'farm-7', region: 'ZA-MP', label: 'Kitchen' })

    const secret = document.querySelector('[data-testid="device-secret"]')
    expect(secret?.textContent).toBe(SECRET)
    expect(qr.toDataURL).toHaveBeenCalledTimes(1)
    expect(JSON.parse(qr.toDataURL.mock.calls[0]![0])).toEqual({ pid: 'farm-7', kid: 1, secret: SECRET })
    const img = document.querySelector<HTMLImageElement>('[data-testid="device-qr"]')
    expect(img?.getAttribute('src')).toMatch(/^data:image\/png;base64,/)
    expect(img?.getAttribute('alt')).toContain('QR code')

    await w.get('[data-testid="secret-copy"]').trigger('click')
    await flushPromises()
    expect(writeText).toHaveBeenCalledWith(SECRET)
    expect(w.text()).toContain('Copied')

    // Escape and clicks beside the dialog do not throw the secret away by accident.
    await w.get('.modal-backdrop').trigger('keydown', { key: 'Escape' })
    await w.get('.modal-backdrop').trigger('click')
    expect(document.querySelector('[data-testid="device-secret"]')).not.toBeNull()

    await w.get('[data-testid="secret-done"]').trigger('click')
    await settle()
    expect(document.querySelector('[data-testid="device-secret"]')).toBeNull()
    expect(document.querySelector('[data-testid="device-qr"]')).toBeNull()
    expect(document.body.innerHTML).not.toContain(SECRET)
    // The list now has the device; the form is empty for the next one.
    expect(w.find('[data-testid="device-row"][data-pid="farm-7"]').exists()).toBe(true)
    expect((w.get('[data-testid="device-create-pid"]').element as HTMLInputElement).value).toBe('')
    vi.unstubAllGlobals()
  })

  it('checks the form before sending and shows the server’s problem detail', async () => {
    const w = await mountView()
    await w.get('[data-testid="device-create-submit"]').trigger('click')
    await settle()
    expect(w.text()).toContain('Enter the device id')
    expect(w.text()).toContain('Choose the region')
    expect(backend.find('POST', '/api/devices')).toHaveLength(0)

    await register(w, 'bad pid!')
    expect(w.text()).toContain('Only letters, digits')
    expect(w.get('[data-testid="device-create-pid"]').attributes('aria-invalid')).toBe('true')

    await register(w, 'demo-button-1')
    expect(w.get('[role="alert"]').text()).toContain("device 'demo-button-1' already exists")
    expect(document.querySelector('[data-testid="device-secret"]')).toBeNull()
  })

  it('rotates a key after confirmation and shows the new secret the same way', async () => {
    backend
      .on('GET', '/api/devices/demo-button-1', () => devices[0])
      .on('GET', '/api/devices/demo-button-1/rejections', () =>
        page([{ id: 1, received_at: '2026-01-01T00:00:00Z', transport: 'mqtt', topic: 'panic/ingest/demo-button-1', pid: 'demo-button-1', reason: 'bad_signature', detail: 'signature does not match', size: 120, excerpt: '{"pid":"demo-button-1"' }]),
      )
      .on('POST', '/api/devices/demo-button-1/rotate', () => {
        devices[0] = {
          ...devices[0]!,
          keys: [
            { kid: 1, state: 'grace', grace_until: '2026-02-01T00:00:00Z', created_at: '2026-01-01T00:00:00Z' },
            { kid: 2, state: 'current', grace_until: null, created_at: '2026-01-02T00:00:00Z' },
          ],
        }
        return reply(201, { pid: 'demo-button-1', kid: 2, secret: ROTATED })
      })
    const w = await mountView()
    await w.get('[aria-label="Manage demo-button-1"]').trigger('click')
    await settle()
    const detail = w.get('[data-testid="device-detail"]')
    expect(detail.get('[data-testid="device-rejections"]').text()).toContain('bad_signature')

    await detail.get('[data-testid="device-rotate"]').trigger('click')
    await settle()
    // Cancelling does nothing.
    await w.get('[data-testid="confirm-cancel"]').trigger('click')
    await settle()
    expect(backend.find('POST', '/api/devices/demo-button-1/rotate')).toHaveLength(0)

    await detail.get('[data-testid="device-rotate"]').trigger('click')
    await settle()
    await w.get('[data-testid="confirm-ok"]').trigger('click')
    await settle()
    expect(document.querySelector('[data-testid="device-secret"]')?.textContent).toBe(ROTATED)
    expect(JSON.parse(qr.toDataURL.mock.calls.at(-1)![0])).toEqual({ pid: 'demo-button-1', kid: 2, secret: ROTATED })
    expect(detail.get('[data-testid="device-keys"]').text()).toContain('grace')
  })

  it('revokes a key and deactivates only after a confirmation', async () => {
    backend
      .on('GET', '/api/devices/demo-button-1', () => devices[0])
      .on('GET', '/api/devices/demo-button-1/rejections', () => page([]))
      .on('POST', '/api/devices/demo-button-1/keys/1/revoke', () => ({
        ...devices[0]!,
        keys: [{ ...devices[0]!.keys[0]!, state: 'revoked' }],
      }))
      .on('POST', '/api/devices/demo-button-1/deactivate', () => ({ ...devices[0]!, active: false }))
    const w = await mountView()
    await w.get('[aria-label="Manage demo-button-1"]').trigger('click')
    await settle()

    await w.get('[data-testid="device-revoke-1"]').trigger('click')
    await settle()
    expect(w.get('[role="alertdialog"]').text()).toContain('current key')
    await w.get('[data-testid="confirm-ok"]').trigger('click')
    await settle()
    expect(backend.find('POST', '/api/devices/demo-button-1/keys/1/revoke')).toHaveLength(1)
    expect(w.get('[data-testid="device-keys"] [data-kid="1"]').attributes('data-state')).toBe('revoked')

    await w.get('[data-testid="device-deactivate"]').trigger('click')
    await settle()
    await w.get('[data-testid="confirm-ok"]').trigger('click')
    await settle()
    expect(backend.find('POST', '/api/devices/demo-button-1/deactivate')).toHaveLength(1)
    expect(w.get('[data-testid="device-row"][data-pid="demo-button-1"]').text()).toContain('Inactive')
    expect(w.find('[data-testid="device-activate"]').exists()).toBe(true)
  })

  it('forgets the secret when the admin leaves the screen', async () => {
    backend.on('GET', '/api/vehicles', () => page([]))
    const router = createRouter({
      history: createMemoryHistory(),
      routes: [
        { path: '/', name: 'monitor', component: { render: () => h('p', 'monitor') } },
        { path: '/admin', component: AdminLayout, children: adminRoutes },
      ],
    })
    const App = defineComponent({ render: () => h(RouterView) })
    await router.push('/admin/devices')
    wrapper = mount(App, { global: { plugins: [router] }, attachTo: document.body })
    await router.isReady()
    await settle(10)

    await register(wrapper, 'farm-8')
    expect(document.querySelector('[data-testid="device-secret"]')?.textContent).toBe(SECRET)

    // The dialog covers the page, so leaving means the browser's back/forward or a redirect.
    await router.push({ name: 'admin-vehicles' })
    await settle(10)
    expect(router.currentRoute.value.name).toBe('admin-vehicles')
    expect(document.body.innerHTML).not.toContain(SECRET)

    await router.back()
    await settle(10)
    expect(router.currentRoute.value.name).toBe('admin-devices')
    expect(document.querySelector('[data-testid="device-create-pid"]')).not.toBeNull()
    expect(document.querySelector('[data-testid="device-secret"]')).toBeNull()
    expect(document.body.innerHTML).not.toContain(SECRET)
  })
})
