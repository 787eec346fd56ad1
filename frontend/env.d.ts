/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Optional raster tile URL template drawn over the bundled basemap, e.g. `https://tiles.example/{z}/{x}/{y}.png`. Off when empty. */
  readonly VITE_TILE_URL?: string
  /** Attribution shown for VITE_TILE_URL. */
  readonly VITE_TILE_ATTRIBUTION?: string
}
interface ImportMeta {
  readonly env: ImportMetaEnv
}

declare module 'virtual:naboom-countries' {
  const countries: GeoJSON.FeatureCollection<GeoJSON.Polygon | GeoJSON.MultiPolygon, { code: string; name: string }>
  export default countries
}
