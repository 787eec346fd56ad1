import { describe, expect, it } from 'vitest'
import { clusterPoints, type ClusterInput } from '@/map/cluster'

const pt = (id: string, x: number, y: number, never = false): ClusterInput<string> => ({ id, x, y, never, item: id })

describe('clusterPoints', () => {
  it('leaves sparse points alone', () => {
    const r = clusterPoints([pt('a', 0, 0), pt('b', 200, 200)], 56, 2)
    expect(r.clusters).toHaveLength(0)
    expect(r.singles.map((p) => p.id)).toEqual(['a', 'b'])
  })

  it('groups dense points of one cell into one cluster at their mean position', () => {
    const r = clusterPoints([pt('a', 1, 1), pt('b', 3, 5), pt('c', 5, 3), pt('d', 7, 7), pt('e', 300, 300)], 56, 4)
    expect(r.clusters).toHaveLength(1)
    expect(r.clusters[0]!.members.map((m) => m.id).sort()).toEqual(['a', 'b', 'c', 'd'])
    expect(r.clusters[0]!.x).toBe(4)
    expect(r.singles.map((p) => p.id)).toEqual(['e'])
  })

  it('never hides an unacknowledged SOS in a cluster', () => {
    const r = clusterPoints([pt('sos', 1, 1, true), pt('b', 2, 2), pt('c', 3, 3), pt('d', 4, 4), pt('e', 5, 5)], 56, 4)
    expect(r.singles.map((p) => p.id)).toEqual(['sos'])
    expect(r.clusters[0]!.members).toHaveLength(4)
  })
})
