import type L from 'leaflet'
import type { BasemapData } from '@/map/data'

/**
 * The bundled vector basemap: works with no tile server at all. Its data is a separate lazy
 * chunk (hashed file name, so the browser caches it for good); it is fetched once per page.
 */
let pending: Promise<BasemapData> | null = null

export function loadBasemapData(): Promise<BasemapData> {
  pending ??= import('@/map/data').then((m) => m.default).catch((err) => {
    pending = null
    throw err
  })
  return pending
}

/** Draw the basemap into its own pane (under any tile layer). */
export function drawBasemap(leaflet: typeof L, map: L.Map, data: BasemapData, pane: string): L.LayerGroup {
  const group = leaflet.layerGroup([], { pane })
  leaflet
    .geoJSON(data.countries, {
      pane,
      interactive: false,
      style: (f) => ({
        color: '#6b7280',
        weight: f?.properties.code === 'ZA' ? 1.6 : 1,
        fillColor: f?.properties.code === 'ZA' ? '#fbfaf6' : '#ecebe5',
        fillOpacity: 1,
      }),
    })
    .addTo(group)
  leaflet
    .polyline(
      data.provinceBorders.map((line) => line.map(([lng, lat]) => [lat, lng] as [number, number])),
      { pane, interactive: false, color: '#9ca3af', weight: 1.2, dashArray: '6 5' },
    )
    .addTo(group)
  for (const road of data.roads) {
    leaflet
      .polyline(
        road.line.map(([lng, lat]) => [lat, lng] as [number, number]),
        { pane, interactive: false, color: '#d97706', weight: 2.5, opacity: 0.7 },
      )
      .bindTooltip(road.name, { permanent: false, className: 'bm-road' })
      .addTo(group)
  }
  const provinceLabels = leaflet.layerGroup()
  for (const p of data.provinces) {
    leaflet
      .marker([p.label[1], p.label[0]], {
        pane,
        interactive: false,
        keyboard: false,
        icon: leaflet.divIcon({ className: 'bm-province', html: p.name, iconSize: [160, 20], iconAnchor: [80, 10] }),
      })
      .addTo(provinceLabels)
  }
  const townLabels = leaflet.layerGroup()
  for (const t of data.towns) {
    leaflet
      .marker([t.at[1], t.at[0]], {
        pane,
        interactive: false,
        keyboard: false,
        icon: leaflet.divIcon({
          className: `bm-town bm-town--${t.rank}`,
          html: `<span class="bm-town-dot"></span><span class="bm-town-name">${t.name}</span>`,
          iconSize: [0, 0],
        }),
      })
      .addTo(townLabels)
  }
  group.addLayer(provinceLabels)
  group.addLayer(townLabels)
  // Provinces read at country scale; towns (rank 2) only once zoomed in enough not to crowd.
  const update = () => {
    const z = map.getZoom()
    const el = map.getPane(pane)
    if (el) {
      el.classList.toggle('bm-zoom-low', z < 7)
      el.classList.toggle('bm-zoom-high', z >= 9)
    }
  }
  map.on('zoomend', update)
  update()
  group.addTo(map)
  return group
}
