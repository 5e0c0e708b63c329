package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/autoscale"
)

// Running a fleet: an admin drains, undrains and removes nodes. There is one
// way to drain a node (drainNode, which the autoscaler uses too) and one way
// to retire it (scaler.retire): its provider removes the machine when it
// can (local), then the store marks it gone and refuses its credential.

// nodeWork is what runs on a node now.
type nodeWork struct {
	jobs     []int64
	sessions int
}

func (w nodeWork) idle() bool { return len(w.jobs) == 0 && w.sessions == 0 }

// String says it for people: "2 jobs (ids 14, 15) and 1 session".
func (w nodeWork) String() string {
	var parts []string
	if len(w.jobs) > 0 {
		ids := make([]string, len(w.jobs))
		for i, id := range w.jobs {
			ids[i] = strconv.FormatInt(id, 10)
		}
		word := "ids"
		if len(ids) == 1 {
			word = "id"
		}
		parts = append(parts, fmt.Sprintf("%s (%s %s)", dspool.Plural(len(ids), "job"), word, strings.Join(ids, ", ")))
	}
	if w.sessions > 0 {
		parts = append(parts, dspool.Plural(w.sessions, "session"))
	}
	return strings.Join(parts, " and ")
}

// work returns what runs on each of the nodes ids. placeMu is held, so
// that nothing is placed there meanwhile.
func (s *Server) work(ctx context.Context, ids ...string) (map[string]nodeWork, error) {
	active, err := s.db.ActiveJobs(ctx)
	if err != nil {
		return nil, err
	}
	sessions := s.sessions.perNode()
	out := map[string]nodeWork{}
	for _, id := range ids {
		out[id] = nodeWork{sessions: sessions[id]}
	}
	for _, j := range active {
		if w, ok := out[j.Node]; ok && j.State == dspool.JobRunning {
			w.jobs = append(w.jobs, j.ID)
			out[j.Node] = w
		}
	}
	return out, nil
}

// drainNode marks node id draining: it takes no new work. With idleOnly,
// only when nothing runs there. It returns what runs there and whether it
// drained it; under placeMu, so that no placement races it.
func (s *Server) drainNode(ctx context.Context, id string, idleOnly bool) (nodeWork, bool, error) {
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	works, err := s.work(ctx, id)
	if err != nil {
		return nodeWork{}, false, err
	}
	w := works[id]
	if idleOnly && !w.idle() {
		return w, false, nil
	}
	defer s.hub.pauseHeartbeats(id)()
	// The store first, then the connection: a connection attached
	// meanwhile reads the store after its attach (hub.settle), so that one
	// or the other tells it (placeMu keeps the scheduler out until both).
	_, err = s.db.ChangeNode(ctx, id, func(n *dspool.Node) bool {
		if n.State == dspool.NodeDraining || n.State == dspool.NodeGone {
			return false
		}
		n.State = dspool.NodeDraining
		return true
	})
	s.hub.setState(id, dspool.NodeDraining)
	if err != nil {
		return w, false, err
	}
	return w, true, nil
}

// findNode returns the node an admin names, by id or by name: of the nodes
// of that name, the one not gone, else the newest.
func (s *Server) findNode(ctx context.Context, key string) (*dspool.Node, error) {
	nodes, err := s.db.Nodes(ctx, "", true)
	if err != nil {
		return nil, err
	}
	var best *dspool.Node
	for _, n := range nodes {
		switch {
		case n.ID == key:
			return n, nil
		case n.Name != key:
		case best == nil, best.State == dspool.NodeGone && n.State != dspool.NodeGone,
			(best.State == dspool.NodeGone) == (n.State == dspool.NodeGone) && n.CreatedAt.After(best.CreatedAt):
			best = n
		}
	}
	if best == nil {
		return nil, dspool.Errorf(dspool.ENotFound, "node %s not found: list nodes with `dspool node list`", key)
	}
	return best, nil
}

// nodeVerb runs the part of an admin's node verb that can fail, auditing
// the failure; it returns the node, or false when it answered.
func (s *Server) nodeVerb(w http.ResponseWriter, r *http.Request, action string) (*dspool.Node, bool) {
	n, err := s.findNode(r.Context(), r.PathValue("name"))
	if err != nil {
		s.audit(r, "", action, "node "+r.PathValue("name"), dspool.AuditFailure, err.Error())
		s.fail(w, r, err)
		return nil, false
	}
	return n, true
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, action, target string, err error) {
	s.audit(r, "", action, target, dspool.AuditFailure, err.Error())
	s.fail(w, r, err)
}

// drainNodeAPI answers POST /api/v1/nodes/{name}/drain.
func (s *Server) drainNodeAPI(w http.ResponseWriter, r *http.Request) {
	n, ok := s.nodeVerb(w, r, dspool.AuditNodeDrain)
	if !ok {
		return
	}
	target := "node " + n.Name
	switch n.State {
	case dspool.NodeLost, dspool.NodeFailed, dspool.NodeGone:
		s.refuse(w, r, dspool.AuditNodeDrain, target, dspool.Errorf(dspool.EConflict,
			"node %s is %s: it takes no work already; remove it with `dspool node remove %s`", n.Name, n.State, n.Name))
		return
	}
	was := n.State
	work, _, err := s.drainNode(r.Context(), n.ID, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "", dspool.AuditNodeDrain, target, dspool.AuditSuccess, "")
	if was != dspool.NodeDraining {
		msg := fmt.Sprintf("%s drained node %s: it takes no new work", userFrom(r).Name, n.Name)
		if !work.idle() {
			msg += "; still running there: " + work.String()
		}
		s.event(r.Context(), n.Pool, dspool.EventDrain, []string{n.Name}, msg)
	}
	s.Kick()
	s.answerNode(w, r, n.ID, work, "")
}

// undrainNodeAPI answers POST /api/v1/nodes/{name}/undrain.
func (s *Server) undrainNodeAPI(w http.ResponseWriter, r *http.Request) {
	n, ok := s.nodeVerb(w, r, dspool.AuditNodeUndrain)
	if !ok {
		return
	}
	target := "node " + n.Name
	if s.scaler.isRemoving(n.Name) {
		s.refuse(w, r, dspool.AuditNodeUndrain, target, dspool.Errorf(dspool.EConflict, "node %s is being removed: it cannot take work again", n.Name))
		return
	}
	switch n.State {
	case dspool.NodeReady:
	case dspool.NodeDraining:
		if err := s.undrain(r.Context(), n); err != nil {
			s.fail(w, r, err)
			return
		}
		s.event(r.Context(), n.Pool, dspool.EventUndrain, []string{n.Name}, fmt.Sprintf("%s undrained node %s: it takes work again", userFrom(r).Name, n.Name))
		s.Kick()
	default:
		s.refuse(w, r, dspool.AuditNodeUndrain, target, dspool.Errorf(dspool.EConflict, "node %s is %s, not draining: nothing to undrain", n.Name, n.State))
		return
	}
	s.audit(r, "", dspool.AuditNodeUndrain, target, dspool.AuditSuccess, "")
	s.answerNode(w, r, n.ID, nodeWork{}, "")
}

// undrain makes a draining node ready again, between two of its
// heartbeats (which would otherwise write back the state they read).
func (s *Server) undrain(ctx context.Context, n *dspool.Node) error {
	defer s.hub.pauseHeartbeats(n.ID)()
	// A node that is not connected is ready again once it heartbeats.
	to := dspool.NodeProvisioning
	if ac := s.hub.conn(n.ID); ac != nil {
		to = dspool.NodeReady
	}
	cur, err := s.db.ChangeNode(ctx, n.ID, func(cur *dspool.Node) bool {
		if cur.State != dspool.NodeDraining {
			return false
		}
		cur.State = to
		return true
	})
	if err != nil {
		return err
	}
	if cur.State == to {
		s.hub.setState(n.ID, to)
	}
	return nil
}

// answerNode writes the node as it is now, with what runs there.
func (s *Server) answerNode(w http.ResponseWriter, r *http.Request, id string, work nodeWork, note string) {
	n, err := s.db.Node(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.hub.decorate(n)
	jobs := work.jobs
	if jobs == nil {
		jobs = []int64{}
	}
	writeJSON(w, http.StatusOK, api.NodeChange{Node: n, Jobs: jobs, Sessions: work.sessions, Note: note})
}

// removeNodeAPI answers DELETE /api/v1/nodes/{name}[?force=true].
func (s *Server) removeNodeAPI(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	n, ok := s.nodeVerb(w, r, dspool.AuditNodeRemove)
	if !ok {
		return
	}
	target := "node " + n.Name
	force := r.URL.Query().Get("force") == "true"
	if !s.scaler.claim(n.Name) {
		s.refuse(w, r, dspool.AuditNodeRemove, target, dspool.Errorf(dspool.EConflict, "node %s is being removed already", n.Name))
		return
	}
	defer s.scaler.release(n.Name)
	work, drained, err := s.drainNode(ctx, n.ID, !force)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !drained {
		s.refuse(w, r, dspool.AuditNodeRemove, target, dspool.Errorf(dspool.EConflict,
			"node %s runs %s: drain it first (dspool node drain %s) and remove it once they are done, or --force to end them",
			n.Name, work, n.Name))
		return
	}
	who := userFrom(r).Name
	why := fmt.Sprintf("removed by %s", who)
	if !work.idle() {
		why += fmt.Sprintf(" with --force, ending %s", work)
		s.endWork(ctx, n, work, fmt.Sprintf("node %s was removed by %s", n.Name, who))
	}
	p, err := s.db.Pool(ctx, n.Pool)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	prov := s.scaler.provider(p.Provider.Name)
	if err := s.scaler.retire(ctx, p, prov, autoscale.Removal{ID: n.ID, Name: n.Name, Reason: why}); err != nil {
		s.refuse(w, r, dspool.AuditNodeRemove, target, dspool.Errorf(dspool.EUnavailable,
			"node %s is drained, but its provider could not remove it (%v): try again", n.Name, err))
		return
	}
	s.audit(r, "", dspool.AuditNodeRemove, target, dspool.AuditSuccess, why)
	note := ""
	if s.scaler.scales(p) && p.Autoscale == nil && p.Count > 0 {
		note = fmt.Sprintf("pool %s keeps %s: its provider starts another; lower its count (dspool pool apply) to shrink it",
			p.Name, dspool.Plural(p.Count, "node"))
	}
	s.answerNode(w, r, n.ID, work, note)
}

// endWork ends what runs on node n for a forced removal: its attempts with
// reason node_removed (retried when their jobs allow), killed on the node,
// and its sessions, whose users are told why.
func (s *Server) endWork(ctx context.Context, n *dspool.Node, work nodeWork, why string) {
	ctx = context.WithoutCancel(ctx)
	if len(work.jobs) > 0 {
		ended, err := s.db.EndNodeAttempts(ctx, n.ID, dspool.ReasonNodeRemoved, why)
		if err != nil {
			s.log.Error("end the attempts of a removed node", "node", n.ID, "err", err)
		}
		for _, j := range ended {
			s.killNow(ctx, n.ID, api.AttemptRef{Job: j.ID, Attempt: attemptOf(j)})
			s.notify(j.ID)
		}
	}
	s.sessions.nodeGone(n.ID, why)
}

// attemptOf is the attempt a job that Finish moved on had just ended.
func attemptOf(j *dspool.Job) int {
	if j.State == dspool.JobQueued {
		return j.Attempt - 1
	}
	return j.Attempt
}

// killNow asks a node to kill an attempt and waits a little for it to
// answer: the node may be cut off right after.
func (s *Server) killNow(ctx context.Context, node string, ref api.AttemptRef) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.hub.call(ctx, node, "/kill", ref); err != nil {
		s.log.Warn("push kill", "job", ref.Job, "attempt", ref.Attempt, "node", node, "err", err)
	}
}

// nodeLeft marks a node whose agent said it is stopping on purpose gone at
// once (it comes back when its agent starts again), ending what still
// runs there.
func (s *Server) nodeLeft(ctx context.Context, id string) {
	n, err := s.db.Node(ctx, id)
	if err != nil {
		s.log.Error("a leaving node", "node", id, "err", err)
		return
	}
	msg := fmt.Sprintf("its agent stopped on purpose at %s: it left the pool, and comes back when the agent starts again",
		s.cfg.Now().Local().Format(time.DateTime))
	s.goNode(ctx, n, dspool.EventLeft, msg, fmt.Sprintf("node %s left: its agent stopped", n.Name))
}

// goNode marks node n gone (not removed) with msg, ends its attempts and
// sessions, and records an event of kind.
func (s *Server) goNode(ctx context.Context, n *dspool.Node, kind, msg, sessionMsg string) {
	changed, err := s.db.LeaveNode(ctx, n.ID, msg)
	if err != nil {
		s.log.Error("mark a node gone", "node", n.ID, "err", err)
		return
	}
	s.hub.setState(n.ID, dspool.NodeGone)
	s.sessions.nodeGone(n.ID, sessionMsg)
	for _, j := range changed {
		s.notify(j.ID)
	}
	s.event(ctx, n.Pool, kind, []string{n.Name}, fmt.Sprintf("node %s (%s): %s", n.Name, n.ID, msg))
	s.log.Info("node gone", "node", n.ID, "name", n.Name, "why", msg, "attempts", len(changed))
	s.Kick()
}

// goneAfterLost marks gone the nodes of nodes that have been silent for
// NodeGoneAfter beyond the moment they were lost (lostAfter): lost ones,
// and failed ones. Counted from the node grace instead, a node gone after
// less than the kill grace and the margin was gone at the first pass after
// it was lost.
func (s *Server) goneAfterLost(ctx context.Context, nodes []*dspool.Node, now time.Time) {
	for _, n := range nodes {
		if n.State != dspool.NodeLost && n.State != dspool.NodeFailed {
			continue
		}
		last, connected := s.lastContact(n)
		if connected || now.Sub(last) <= s.lostAfter()+s.cfg.NodeGoneAfter {
			continue
		}
		msg := fmt.Sprintf("no heartbeat since %s: %s for %s, so it is gone; it comes back if its agent connects again",
			last.Local().Format(time.DateTime), n.State, s.cfg.NodeGoneAfter)
		s.goNode(ctx, n, dspool.EventGone, msg, fmt.Sprintf("node %s is gone", n.Name))
	}
}

// nodeReturned records that a node that had gone connected again.
func (s *Server) nodeReturned(ctx context.Context, n *dspool.Node) {
	s.event(ctx, n.Pool, dspool.EventReturned, []string{n.Name}, fmt.Sprintf("node %s (%s) connected again after it had gone", n.Name, n.ID))
}
