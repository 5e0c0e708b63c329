package scheduler

import "github.com/dspool/dspool"

// SessionNode is a ready node of an interactive pool as session routing
// sees it.
type SessionNode struct {
	Node
	// Sessions is how many sessions the node holds now.
	Sessions int
}

// Route picks the node for a new interactive session that reserves cpus and
// mem. It is a pure function, like Plan.
//
//  1. Affinity: when the user already has a session on a node of the pool
//     (affinity, a node ID), the session joins it: it shares that session's
//     reservation, so it needs no room of its own. This keeps one user's
//     shells, file copies and editor on one machine.
//  2. Otherwise, with placement spread, the least-loaded node with room
//     for the reservation: the most free cpus, then the most free memory,
//     then the fewest sessions, then node ID. Sessions spread out (unlike
//     batch jobs, which pack), because interactive users feel a busy
//     neighbour.
//  3. With placement pack, the most-used node with room: the fewest free
//     cpus, then the least free memory, then the most sessions, then node
//     ID. A pool that autoscales packs, so that its nodes empty and go
//     rather than each keeping one late user.
//
// ok is false when no node can take the session; the caller waits for
// capacity or tells the user.
func Route(nodes []SessionNode, affinity string, cpus dspool.MilliCPU, mem dspool.Bytes, placement string) (node string, joined, ok bool) {
	if affinity != "" {
		for _, n := range nodes {
			if n.ID == affinity {
				return n.ID, true, true
			}
		}
	}
	best := -1
	for i, n := range nodes {
		if n.FreeCPUs < cpus || n.FreeMem < mem || cpus < 0 || mem < 0 {
			continue
		}
		if best < 0 || placement == dspool.PlacementPack && moreLoaded(&n, &nodes[best]) ||
			placement != dspool.PlacementPack && lessLoaded(&n, &nodes[best]) {
			best = i
		}
	}
	if best < 0 {
		return "", false, false
	}
	return nodes[best].ID, false, true
}

func lessLoaded(a, b *SessionNode) bool {
	switch {
	case a.FreeCPUs != b.FreeCPUs:
		return a.FreeCPUs > b.FreeCPUs
	case a.FreeMem != b.FreeMem:
		return a.FreeMem > b.FreeMem
	case a.Sessions != b.Sessions:
		return a.Sessions < b.Sessions
	}
	return a.ID < b.ID
}

func moreLoaded(a, b *SessionNode) bool {
	switch {
	case a.FreeCPUs != b.FreeCPUs:
		return a.FreeCPUs < b.FreeCPUs
	case a.FreeMem != b.FreeMem:
		return a.FreeMem < b.FreeMem
	case a.Sessions != b.Sessions:
		return a.Sessions > b.Sessions
	}
	return a.ID < b.ID
}
