/** Bounding boxes [west, south, east, north] of the regions (ISO 3166-2:ZA codes), for the map's first view. Small, so it stays in the main bundle. */
export type BBox = [number, number, number, number]

/** South Africa as a whole: the fallback view. */
export const COUNTRY_BOUNDS: BBox = [16.3, -34.9, 33.0, -22.1]

export const REGION_BOUNDS: Record<string, BBox> = {
  'ZA': [16.3, -34.9, 33.0, -22.1],
  'ZA-LP': [26.4, -25.5, 31.9, -22.1],
  'ZA-MP': [28.2, -27.5, 32.05, -24.4],
  'ZA-GP': [27.1, -26.95, 28.9, -25.1],
  'ZA-GT': [27.1, -26.95, 28.9, -25.1],
  'ZA-NW': [22.6, -28.0, 28.4, -24.6],
  'ZA-FS': [24.3, -30.7, 29.8, -26.6],
  'ZA-KZN': [28.8, -31.1, 32.9, -26.8],
  'ZA-NL': [28.8, -31.1, 32.9, -26.8],
  'ZA-EC': [22.7, -34.2, 30.2, -30.0],
  'ZA-NC': [16.4, -32.9, 25.5, -24.7],
  'ZA-WC': [17.7, -34.9, 24.2, -30.4],
}

/** The box that holds all of `codes` (South Africa when none is known). */
export function boundsFor(codes: readonly string[]): BBox {
  const boxes = codes.map((c) => REGION_BOUNDS[c.toUpperCase()]).filter((b): b is BBox => !!b)
  if (!boxes.length) return COUNTRY_BOUNDS
  return [
    Math.min(...boxes.map((b) => b[0])),
    Math.min(...boxes.map((b) => b[1])),
    Math.max(...boxes.map((b) => b[2])),
    Math.max(...boxes.map((b) => b[3])),
  ]
}
