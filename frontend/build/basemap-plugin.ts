import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { Plugin } from 'vite'
import { feature } from 'topojson-client'
import type { Topology, GeometryCollection } from 'topojson-specification'

/**
 * `virtual:naboom-countries`: South Africa and its neighbours as GeoJSON, cut at build time out
 * of world-atlas (Natural Earth, public domain) so the browser gets tens of kilobytes, not the
 * whole world. Coordinates are rounded to 3 decimals (about 100 m): a basemap for orientation.
 */
export const COUNTRY_IDS: Record<string, string> = {
  '710': 'ZA',
  '426': 'LS',
  '748': 'SZ',
  '072': 'BW',
  '516': 'NA',
  '716': 'ZW',
  '508': 'MZ',
}

const VIRTUAL_ID = 'virtual:naboom-countries'
const RESOLVED_ID = '\0' + VIRTUAL_ID

type Position = [number, number]

function round(p: number[]): Position {
  return [Math.round((p[0] ?? 0) * 1000) / 1000, Math.round((p[1] ?? 0) * 1000) / 1000]
}

function ring(points: number[][]): Position[] {
  const out: Position[] = []
  for (const p of points) {
    const r = round(p)
    const last = out[out.length - 1]
    if (!last || last[0] !== r[0] || last[1] !== r[1]) out.push(r)
  }
  return out
}

export function buildCountries(resolution: '10m' | '50m' = '10m'): unknown {
  const require = createRequire(import.meta.url)
  const file = require.resolve(`world-atlas/countries-${resolution}.json`)
  const topo = JSON.parse(readFileSync(file, 'utf8')) as Topology<{ countries: GeometryCollection<{ name: string }> }>
  const wanted: GeometryCollection<{ name: string }> = {
    type: 'GeometryCollection',
    geometries: topo.objects.countries.geometries.filter((g) => String(g.id) in COUNTRY_IDS),
  }
  const fc = feature(topo, wanted) as unknown as {
    features: { id?: string | number; properties: { name: string }; geometry: { type: string; coordinates: unknown } }[]
  }
  return {
    type: 'FeatureCollection',
    features: fc.features.map((f) => {
      const g = f.geometry
      const coordinates =
        g.type === 'Polygon'
          ? (g.coordinates as number[][][]).map(ring)
          : (g.coordinates as number[][][][]).map((poly) => poly.map(ring))
      return {
        type: 'Feature',
        properties: { code: COUNTRY_IDS[String(f.id)], name: f.properties.name },
        geometry: { type: g.type, coordinates },
      }
    }),
  }
}

export function basemapPlugin(): Plugin {
  let cached: string | null = null
  return {
    name: 'naboom-basemap',
    resolveId(id) {
      return id === VIRTUAL_ID ? RESOLVED_ID : null
    },
    load(id) {
      if (id !== RESOLVED_ID) return null
      cached ??= `export default ${JSON.stringify(buildCountries())}`
      return cached
    },
  }
}
