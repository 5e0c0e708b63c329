package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/store"
)

// Heartbeats: each agent reports its state, inventory, usage and attempts
// over its connection, and the reply reconciles them with the store.

func (h *hub) serveHeartbeat(ac *agentConn, w http.ResponseWriter, r *http.Request) {
	// Contact counts from here, whatever the answer: an agent counts every
	// answered heartbeat as contact when it fences itself (see fence.go in
	// the agent), so the server must never have heard of it later than that.
	h.mu.Lock()
	h.seen[ac.node] = h.s.cfg.Now()
	h.mu.Unlock()
	w.Header().Set(api.HeardHeader, "1")
	var hb api.Heartbeat
	if err := readJSON(r, &hb); err != nil {
		h.s.fail(w, r, err)
		return
	}
	ac.hbMu.Lock()
	defer ac.hbMu.Unlock()
	seq := ac.begun.Add(1) // before the store is read: see pushMark
	reply, err := h.heartbeat(r.Context(), ac, &hb)
	if err != nil {
		h.s.metrics.hbErrors.Inc()
		h.s.fail(w, r, err)
		return
	}
	reply.Seq = seq
	writeJSON(w, http.StatusOK, reply)
	for i := range reply.Start {
		wipeValues(reply.Start[i].Secrets)
	}
}

// heartbeat reconciles what the agent reports with the store: it records
// starts and ends of current attempts, refuses stale ones (telling the agent
// to kill them), and resends placed attempts the agent does not know.
func (h *hub) heartbeat(ctx context.Context, ac *agentConn, hb *api.Heartbeat) (*api.HeartbeatReply, error) {
	now := h.s.cfg.Now()
	node, err := h.s.db.Node(ctx, ac.node)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	ac.usage, ac.inv, ac.boot = hb.Usage, hb.Inventory, hb.Boot
	sendPool := !ac.sentHdr
	ac.sentHdr = true
	h.mu.Unlock()

	if st := hb.State; st != dspool.NodeReady && st != dspool.NodeProvisioning && st != dspool.NodeFailed {
		return nil, dspool.Invalid("state", "%q is not a state an agent reports", hb.State)
	}
	// The state to record, given the node's in the store.
	stateOf := func(n *dspool.Node) dspool.NodeState {
		if n.State == dspool.NodeDraining && hb.State == dspool.NodeReady || hb.Leaving {
			return dspool.NodeDraining // a leaving node takes no work while it goes
		}
		return hb.State
	}
	if node.State == dspool.NodeGone && !hb.Leaving {
		h.s.nodeReturned(ctx, node) // it had left, or been lost too long
	}
	accts, err := h.foreignAccounts(ctx, node, hb.Accounts)
	if err != nil {
		return nil, err
	}
	differs := func(n *dspool.Node) bool {
		return n.State != stateOf(n) || n.Message != hb.Message || !sameInventory(n.Inventory, hb.Inventory) || n.LastSeen == nil ||
			!slices.Equal(n.Accounts, accts)
	}
	if differs(node) {
		// Read and written in one transaction: a drain (or anything else)
		// since the read above is kept.
		node, err = h.s.db.ChangeNode(ctx, ac.node, func(n *dspool.Node) bool {
			if !differs(n) {
				return false
			}
			n.State, n.Message, n.Inventory, n.Version, n.Accounts = stateOf(n), hb.Message, hb.Inventory, hb.Version, accts
			t := now
			n.LastSeen = &t
			return true
		})
		if err != nil {
			return nil, err
		}
		h.s.Kick()
	}
	state := stateOf(node)
	h.mu.Lock()
	if ac.state == dspool.NodeDraining && state == dspool.NodeReady {
		state = dspool.NodeDraining // drained since the store was read
	}
	ac.state = state
	ac.accounts = node.Accounts
	h.mu.Unlock()
	if sendPool {
		// The first report on a connection brings the node's capacity
		// back (the hub knew nothing of its inventory until now): work
		// that queued while it was away, as work does across a restart
		// of the control plane, starts now, not at the next periodic
		// pass.
		h.s.Kick()
	}

	want, err := h.s.db.UIDRange(ctx)
	if err != nil {
		return nil, err
	}
	reply := &api.HeartbeatReply{Interval: dspool.Duration(h.s.cfg.Heartbeat), Accounts: &want}
	if sendPool {
		p, err := h.pool(ctx, node.Pool)
		if err != nil {
			return nil, err
		}
		reply.Pool = p
	}
	running, err := h.s.db.ListJobs(ctx, store.JobFilter{Node: ac.node, States: []dspool.JobState{dspool.JobRunning}})
	if err != nil {
		return nil, err
	}
	current := map[int64]*dspool.Job{}
	for _, j := range running {
		current[j.ID] = j
	}
	reported := map[int64]bool{}
	var reports []store.Report
	ended := false
	for _, a := range hb.Attempts {
		j := current[a.Job]
		fenced := j == nil || j.Fence(a.Attempt, ac.node) != nil
		if !fenced {
			reported[a.Job] = true
		}
		if a.Running {
			if fenced || j.CancelRequested {
				reply.Kill = append(reply.Kill, a.AttemptRef)
			} else if j.StartedAt == nil && a.StartedAt != nil {
				reports = append(reports, store.Report{Job: a.Job, Attempt: a.Attempt, StartedAt: a.StartedAt})
			}
			continue
		}
		if !fenced && a.Result != nil {
			r := store.Report{Job: a.Job, Attempt: a.Attempt, Result: a.Result, At: now}
			if a.FinishedAt != nil {
				r.At = *a.FinishedAt
			}
			if j.StartedAt == nil {
				r.StartedAt = a.StartedAt
			}
			reports = append(reports, r)
			ended = true
		}
		reply.Ack = append(reply.Ack, a.AttemptRef)
	}
	if hb.Leaving {
		// The agent has stopped what ran here and said how it ended: the
		// rest (placed, not started) goes elsewhere as the node leaves.
		if err := h.applyReports(ctx, ac, reports, ended); err != nil {
			return nil, err
		}
		h.s.nodeLeft(ctx, ac.node)
		return reply, nil
	}
	for _, j := range running {
		if reported[j.ID] {
			continue
		}
		switch {
		case j.StartedAt != nil:
			// The agent had started it and no longer knows it: it restarted.
			reports = append(reports, store.Report{Job: j.ID, Attempt: j.Attempt, At: now,
				Result: &dspool.AttemptResult{Reason: dspool.ReasonNodeLost, Message: "the node's agent restarted and lost this attempt"}})
			ended = true
		case j.CancelRequested:
			reports = append(reports, store.Report{Job: j.ID, Attempt: j.Attempt, At: now,
				Result: &dspool.AttemptResult{Message: "cancelled before it started"}})
		default:
			spec, err := h.spec(ctx, j)
			var unusable unusableSecret
			if errors.As(err, &unusable) {
				// Its log says why, as when the push finds it (startFailed):
				// an attempt placed before its node connected comes here.
				h.logStartError(ctx, j, unusable.Error())
				reports = append(reports, startFailure(j, unusable.Error(), now))
				ended = true
				continue
			}
			if err != nil {
				return nil, err
			}
			reply.Start = append(reply.Start, *spec)
		}
	}
	if err := h.applyReports(ctx, ac, reports, ended); err != nil {
		return nil, err
	}
	reply.EndSessions = h.s.sessions.reconcile(ac.node, node.Name, hb.Sessions)
	return reply, nil
}

// foreignAccounts returns the accounts the node keeps after a report: those
// of rep that are not users' own and lie in the store's uid range now; the
// node's stored ones when rep is nil.
func (h *hub) foreignAccounts(ctx context.Context, node *dspool.Node, rep *api.AccountReport) ([]dspool.HostAccount, error) {
	if rep == nil {
		return node.Accounts, nil
	}
	if len(rep.Accounts) > dspool.MaxHostAccounts {
		return nil, dspool.Invalid("accounts", "more than %d accounts", dspool.MaxHostAccounts)
	}
	users, err := h.s.db.Users(ctx)
	if err != nil {
		return nil, err
	}
	r, err := h.s.db.UIDRange(ctx)
	if err != nil {
		return nil, err
	}
	var out []dspool.HostAccount
	for _, a := range dspool.Foreign(rep.Accounts, users) {
		if r.Contains(a.ID) && plainAccountName(a.Name) {
			out = append(out, a)
		}
	}
	dspool.SortAccounts(out)
	if len(out) > 0 && !slices.Equal(out, node.Accounts) {
		h.s.log.Warn("accounts on this node hold uids of dspool's range: their ids are not given to new users, and users whose uid they hold get no work here",
			"node", node.Name, "accounts", dspool.ListAccounts(out))
	}
	return out, nil
}

// plainAccountName: a name of at most 64 printable ASCII characters, as
// useradd makes them; others are not shown.
func plainAccountName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// applyReports records what an agent reported of its attempts; ended says
// some ended, which frees room for the scheduler.
func (h *hub) applyReports(ctx context.Context, ac *agentConn, reports []store.Report, ended bool) error {
	if len(reports) == 0 {
		return nil
	}
	changed, err := h.s.db.ApplyReports(ctx, ac.node, reports)
	if err != nil {
		return err
	}
	for _, id := range changed {
		h.s.notify(id)
	}
	if ended {
		h.s.Kick()
	}
	return nil
}

func sameInventory(a, b dspool.Inventory) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
