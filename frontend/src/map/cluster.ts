/**
 * A small grid clustering (lighter than a plugin): points closer than one cell in screen
 * pixels are drawn as one numbered marker when a cell holds at least `minPoints` of them.
 * Points marked `never` (an unacknowledged SOS, the selected incident) are never hidden in a
 * cluster: the markers that matter most always stay visible on their own.
 */
export interface ClusterInput<T> {
  id: string
  x: number
  y: number
  never?: boolean
  item: T
}

export interface Cluster<T> {
  key: string
  members: ClusterInput<T>[]
  /** Mean position of the members, in the same pixel space. */
  x: number
  y: number
}

export interface ClusterResult<T> {
  singles: ClusterInput<T>[]
  clusters: Cluster<T>[]
}

export function clusterPoints<T>(points: ClusterInput<T>[], cellPx = 56, minPoints = 4): ClusterResult<T> {
  const singles: ClusterInput<T>[] = []
  const cells = new Map<string, ClusterInput<T>[]>()
  for (const p of points) {
    if (p.never) {
      singles.push(p)
      continue
    }
    const key = `${Math.floor(p.x / cellPx)}:${Math.floor(p.y / cellPx)}`
    const list = cells.get(key)
    if (list) list.push(p)
    else cells.set(key, [p])
  }
  const clusters: Cluster<T>[] = []
  for (const [key, members] of cells) {
    if (members.length < minPoints) {
      singles.push(...members)
      continue
    }
    const x = members.reduce((s, m) => s + m.x, 0) / members.length
    const y = members.reduce((s, m) => s + m.y, 0) / members.length
    clusters.push({ key, members, x, y })
  }
  return { singles, clusters }
}
