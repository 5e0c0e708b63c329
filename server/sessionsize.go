package server

import (
	"fmt"
	"slices"
	"time"

	"github.com/dspool/dspool"
)

// sessionKey is what sessions are found by: a user's connections to a
// pool share a session of one size, and get another for another size.
func sessionKey(user, pool, size string) [2]string {
	if size == "" {
		return [2]string{user, pool}
	}
	return [2]string{user, pool + "+" + size}
}

// freeGPUs are the indices of the GPUs among gpus that w takes and that no
// running attempt (jobs) or session (sessions) holds, ascending.
func freeGPUs(gpus []dspool.GPU, w dspool.GPUWant, jobs, sessions []int) []int {
	var out []int
	for _, g := range gpus {
		if w.Fits(g) && !slices.Contains(jobs, g.Index) && !slices.Contains(sessions, g.Index) {
			out = append(out, g.Index)
		}
	}
	slices.Sort(out)
	return out
}

// limitTime ends the session when its time runs out; forget stops the
// timer of a session that ends first.
func (sm *sessions) limitTime(l *Lease) {
	if l.rec.EndsAt == nil {
		return
	}
	left := l.rec.EndsAt.Sub(sm.s.cfg.Now())
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if l.ended {
		return
	}
	l.timer = time.AfterFunc(max(left, 0), func() {
		sm.end(l, fmt.Sprintf("its time limit of %s ran out", l.rec.EndsAt.Sub(l.rec.StartedAt).Round(time.Second)))
	})
}

// cullIdle ends the SSH sessions that went without traffic longer than
// their pool's sessions.idle. A session that holds GPUs is in use while
// its node reports work on one of them.
func (sm *sessions) cullIdle(now time.Time) {
	sm.mu.Lock()
	var idle []*Lease
	for _, l := range sm.live {
		if l.idle > 0 && l.rec.Kind == dspool.SessionSSH && !l.ended && now.Sub(time.Unix(0, l.last.Load())) > l.idle {
			idle = append(idle, l)
		}
	}
	sm.mu.Unlock()
	for _, l := range idle {
		if sm.s.hub.gpusBusy(l.rec.Node, l.rec.GPUIndices) {
			l.last.Store(now.UnixNano())
			continue
		}
		sm.end(l, fmt.Sprintf("idle for %s (no traffic, no work on its GPUs): the pool's sessions.idle", l.idle))
	}
}

// Landed says where a login landed: the node and pool, what the session
// holds, and how long it may last or idle.
func (l *Lease) Landed() string {
	r := l.rec
	what := fmt.Sprintf("%s, %s memory", dspool.Plural(r.CPUs, "cpu"), r.Memory)
	if len(r.GPUIndices) > 0 {
		what += fmt.Sprintf(", GPUs %v", r.GPUIndices)
	}
	size := "the pool's own size"
	if r.Size != "" {
		size = "size " + r.Size
	}
	s := fmt.Sprintf("dspool: you are on node %s of pool %s, in session %s (%s): %s.", r.NodeName, r.Pool, r.ID, size, what)
	if r.EndsAt != nil {
		s += fmt.Sprintf(" It ends at %s (its time limit).", r.EndsAt.UTC().Format(time.RFC3339))
	}
	if l.idle > 0 {
		s += fmt.Sprintf(" Idle limit: %s without traffic ends it.", l.idle)
	} else {
		s += " Idle limit: none; it ends when you log out."
	}
	return s
}

// gpusBusy reports whether node reports work on any of gpus.
func (h *hub) gpusBusy(node string, gpus []int) bool {
	if len(gpus) == 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ac := h.conns[node]
	if ac == nil {
		return false
	}
	for _, g := range gpus {
		if slices.Contains(ac.usage.GPUsBusy, g) {
			return true
		}
	}
	return false
}
