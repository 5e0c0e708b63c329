package server

import (
	"github.com/dspool/dspool/sqlite"
)

// pushMark is what a push of a start carries so that the agent can tell
// it is late: the connection it goes over, and the heartbeats begun on it
// before the placement was committed. A heartbeat begun after that reads
// the placement and its reply carries the start (while the attempt wants
// starting), so an agent that has applied such a reply ignores the push:
// it may come after the attempt ran and was acknowledged. A reply begun
// between the mark and the commit makes the agent ignore a push it needed;
// it then heartbeats at once, and that reply carries the start.
type pushMark struct {
	ac    *agentConn
	begun uint64
}

// pushMarks marks the connections of the nodes of ps; call it before the
// placements are committed.
func (h *hub) pushMarks(ps []sqlite.Placement) map[string]pushMark {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]pushMark, len(ps))
	for _, p := range ps {
		if ac := h.conns[p.Node]; ac != nil {
			out[p.Node] = pushMark{ac: ac, begun: ac.begun.Load()}
		}
	}
	return out
}
