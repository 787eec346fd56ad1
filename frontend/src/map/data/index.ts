/**
 * The basemap's data, one lazy chunk (see vite.config.ts): the countries from world-atlas
 * (cut at build time) and the hand-simplified provinces, towns and N1 of `za.json`.
 */
import type { FeatureCollection, MultiPolygon, Polygon } from 'geojson'
import countries from 'virtual:naboom-countries'
import za from './za.json'

export type LngLat = [number, number]

export interface BasemapData {
  countries: FeatureCollection<Polygon | MultiPolygon, { code: string; name: string }>
  provinces: { name: string; code: string; label: LngLat }[]
  provinceBorders: LngLat[][]
  towns: { name: string; at: LngLat; rank: number }[]
  roads: { name: string; line: LngLat[] }[]
}

const data: BasemapData = {
  countries: countries as BasemapData['countries'],
  provinces: za.provinces as BasemapData['provinces'],
  provinceBorders: za.provinceBorders as LngLat[][],
  towns: za.towns as BasemapData['towns'],
  roads: za.roads as BasemapData['roads'],
}

export default data
