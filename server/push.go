package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/store"
)

// Calls the server makes to agents over their connections: starts and
// kills of attempts, and whatever else asks an agent something.

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
func (h *hub) pushMarks(ps []store.Placement) map[string]pushMark {
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

// call sends one request to an agent over its connection.
func (h *hub) call(ctx context.Context, node, path string, body any) error {
	ac := h.conn(node)
	if ac == nil {
		return fmt.Errorf("node %s is not connected", node)
	}
	return h.callConn(ctx, ac, path, body)
}

// callConn sends one request to an agent over the connection ac.
func (h *hub) callConn(ctx context.Context, ac *agentConn, path string, body any) error {
	_, err := h.askConn(ctx, ac, path, body)
	var r *agentRefusal
	if errors.As(err, &r) {
		return fmt.Errorf("call node %s %s: %d %s", ac.node, path, r.status, http.StatusText(r.status))
	}
	return err
}

// start pushes a placed attempt to its agent over the connection of m,
// marked before the placement. A failed push is repaired by the next
// heartbeat, which resends every placed attempt the agent does not report
// (agents start each attempt at most once).
func (h *hub) start(j *dspool.Job, m pushMark) {
	if m.ac == nil {
		return // not connected when placed: its first heartbeat gets it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec, err := h.spec(ctx, j)
	var unusable unusableSecret
	if errors.As(err, &unusable) {
		h.s.log.Warn("attempt cannot start", "job", j.ID, "attempt", j.Attempt, "err", err)
		h.startFailed(ctx, j, unusable.Error())
		return
	}
	if err == nil {
		spec.After = m.begun
		err = h.callConn(ctx, m.ac, "/attempts", spec)
		wipeValues(spec.Secrets)
	}
	if err != nil {
		h.s.log.Warn("push attempt", "job", j.ID, "attempt", j.Attempt, "node", j.Node, "err", err)
	}
}

func (h *hub) kill(node string, ref api.AttemptRef) { h.stop(node, api.Kill{AttemptRef: ref}) }

// stop asks node's agent to stop an attempt as k says.
func (h *hub) stop(node string, k api.Kill) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.call(ctx, node, "/kill", k); err != nil {
			h.s.log.Warn("push kill", "job", k.Job, "attempt", k.Attempt, "node", node, "reason", k.Reason, "err", err)
		}
	}()
}
