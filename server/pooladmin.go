package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/autoscale"
)

// Pools' lifetime beyond `pool apply`: their join tokens' expiry and
// revocation, and deleting a pool.

// maxJoinTokenTTL bounds a join token's life: one that must last longer
// does not expire at all (--ttl 0), which says so plainly.
const maxJoinTokenTTL = 366 * 24 * time.Hour

// joinTokenExpiry reads the optional body of a join token's creation and
// returns when the token expires (nil: never).
func (s *Server) joinTokenExpiry(r *http.Request) (*time.Time, error) {
	var req api.JoinTokenCreate
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, dspool.Errorf(dspool.ETooLarge, "request body: %v", err)
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		if err := dspool.DecodeJSON(b, &req); err != nil {
			return nil, err
		}
	}
	ttl := time.Duration(req.TTL)
	switch {
	case req.Never && ttl != 0:
		return nil, dspool.Invalid("ttl", "give a ttl or never, not both")
	case req.Never:
		return nil, nil
	case ttl < 0 || ttl > maxJoinTokenTTL:
		return nil, dspool.Invalid("ttl", "%s is out of range: give a duration up to 366 days (8784h), or never", ttl)
	case ttl == 0:
		ttl = api.DefaultJoinTokenTTL
	}
	t := s.cfg.Now().Add(ttl).UTC()
	return &t, nil
}

// joinTokenDetail says when a join token expires, for the audit log and
// the pool's events.
func joinTokenDetail(t *dspool.JoinToken) string {
	if t.ExpiresAt == nil {
		return "it does not expire"
	}
	return "it expires at " + t.ExpiresAt.Format(time.RFC3339)
}

// listJoinTokens answers GET /api/v1/pools/{name}/join-tokens.
func (s *Server) listJoinTokens(w http.ResponseWriter, r *http.Request) {
	p, err := s.db.Pool(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ts, err := s.db.JoinTokens(r.Context(), p.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.JoinTokenList{Tokens: ts})
}

// revokeJoinTokens answers POST /api/v1/pools/{name}/join-tokens/{id}/revoke
// and, for every token of the pool, .../join-tokens/revoke. Nodes that
// joined with a token keep their own credentials.
func (s *Server) revokeJoinTokens(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	target := "pool " + name
	var id int64
	if v := r.PathValue("id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			s.refuse(w, r, dspool.AuditJoinTokenRevoke, target, dspool.Invalid("id", "%q is not a join token id: list them with `dspool pool join-token %s --list`", v, name))
			return
		}
		id = n
		target = fmt.Sprintf("join_token %d of pool %s", id, name)
	}
	p, err := s.db.Pool(r.Context(), name)
	if err != nil {
		s.refuse(w, r, dspool.AuditJoinTokenRevoke, target, err)
		return
	}
	ts, err := s.db.RevokeJoinTokens(r.Context(), p.Name, id)
	if err != nil {
		s.refuse(w, r, dspool.AuditJoinTokenRevoke, target, err)
		return
	}
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = strconv.FormatInt(t.ID, 10)
	}
	detail := "revoked none (already revoked)"
	if len(ts) > 0 {
		detail = "revoked " + strings.Join(ids, ", ")
		s.event(r.Context(), p.Name, dspool.EventJoinToken, nil, fmt.Sprintf("%s revoked join %s %s: nodes can no longer join with %s",
			userFrom(r).Name, plural(len(ts), "token", "tokens"), strings.Join(ids, ", "), plural(len(ts), "it", "them")))
	}
	s.audit(r, "", dspool.AuditJoinTokenRevoke, target, dspool.AuditSuccess, detail)
	writeJSON(w, http.StatusOK, api.JoinTokenList{Tokens: ts})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// deletePool answers DELETE /api/v1/pools/{name}[?force=true]. A pool with
// nodes or work is refused unless forced; then its jobs are cancelled (the
// attempts that ran end with reason node_removed), its sessions end and
// its nodes are removed. Its events are kept.
func (s *Server) deletePool(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	target := "pool " + name
	p, err := s.db.Pool(ctx, name)
	if err != nil {
		s.refuse(w, r, dspool.AuditPoolDelete, target, err)
		return
	}
	nodes, err := s.db.Nodes(ctx, p.Name, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	who := userFrom(r).Name
	why := fmt.Sprintf("pool %s was deleted by %s", p.Name, who)
	out, ended, err := s.endPool(ctx, p, nodes, r.URL.Query().Get("force") == "true", why)
	if err != nil {
		s.refuse(w, r, dspool.AuditPoolDelete, target, err)
		return
	}
	for _, j := range ended {
		if j.State == dspool.JobRunning {
			s.killNow(ctx, j.Node, api.AttemptRef{Job: j.ID, Attempt: j.Attempt})
		}
		s.notify(j.ID)
	}
	for _, n := range nodes {
		s.sessions.nodeGone(n.ID, why)
		if !s.scaler.claim(n.Name) {
			continue // the autoscaler is removing it
		}
		err := s.scaler.retire(ctx, p, s.scaler.provider(p.Provider.Name), autoscale.Removal{ID: n.ID, Name: n.Name, Reason: why})
		s.scaler.unclaim(n.Name)
		if err != nil {
			s.log.Error("remove a node of a deleted pool", "node", n.Name, "err", err)
		}
	}
	s.hub.poolsChanged()
	detail := ""
	if len(out.Nodes) > 0 {
		detail = "with --force: removed " + dspool.Plural(len(out.Nodes), "node")
	}
	if w := (nodeWork{jobs: out.Jobs, sessions: out.Sessions}); !w.idle() {
		detail = strings.TrimPrefix(detail+", ", ", ") + "ended " + w.String()
		if len(out.Nodes) == 0 {
			detail = "with --force: " + detail
		}
	}
	s.audit(r, "", dspool.AuditPoolDelete, target, dspool.AuditSuccess, detail)
	s.event(ctx, p.Name, dspool.EventPoolDeleted, out.Nodes, strings.TrimSuffix(why+"; "+detail, "; "))
	s.Kick()
	writeJSON(w, http.StatusOK, out)
}

// endPool checks what pool p still has and, unless it has something and
// force is off, drains its nodes and deletes it from the store, ending its
// jobs and sessions, under placeMu so that nothing is placed there
// meanwhile. The nodes' machines are left to the caller to remove.
// It returns the jobs it ended, as they were.
func (s *Server) endPool(ctx context.Context, p *dspool.Pool, nodes []*dspool.Node, force bool, why string) (*api.PoolDeletion, []*dspool.Job, error) {
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	ids := make([]string, len(nodes))
	out := &api.PoolDeletion{Pool: p.Name, Nodes: make([]string, len(nodes)), Jobs: []int64{}}
	for i, n := range nodes {
		ids[i], out.Nodes[i] = n.ID, n.Name
	}
	works, err := s.work(ctx, ids...)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range works {
		out.Sessions += w.sessions
	}
	active, err := s.db.ActiveJobs(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, j := range active {
		if j.Pool == p.Name {
			out.Jobs = append(out.Jobs, j.ID)
		}
	}
	if !force && len(nodes)+len(out.Jobs)+out.Sessions > 0 {
		var has []string
		if len(nodes) > 0 {
			has = append(has, fmt.Sprintf("%s (%s)", dspool.Plural(len(nodes), "node"), strings.Join(out.Nodes, ", ")))
		}
		if w := (nodeWork{jobs: out.Jobs, sessions: out.Sessions}); !w.idle() {
			has = append(has, w.String())
		}
		return nil, nil, dspool.Errorf(dspool.EConflict, "pool %s has %s: remove its nodes first (dspool node remove NODE; a pool with a count "+
			"starts new ones: set count: 0 with dspool pool apply), let its work finish or cancel it, or --force to end them", p.Name, strings.Join(has, " and "))
	}
	for _, id := range ids {
		s.hub.setState(id, dspool.NodeDraining)
	}
	ended, _, err := s.db.DeletePool(context.WithoutCancel(ctx), p.Name, why)
	if err != nil {
		return nil, nil, err
	}
	return out, ended, nil
}
