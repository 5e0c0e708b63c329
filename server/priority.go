package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// priorityBounds returns the priorities user may give their jobs for team
// ("" for none), and the default (dspool.JobPriorityBounds).
func (s *Server) priorityBounds(ctx context.Context, user, team string, admin bool) (dspool.PriorityBounds, error) {
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return dspool.PriorityBounds{}, err
	}
	var tl dspool.Limits
	if t := dir.teams[team]; t != nil {
		tl = t.Limits
	}
	return dspool.JobPriorityBounds(user, team, dir.users[user], tl, admin)
}

// setJobPriority changes the priority of a queued job, of a task, or of
// every queued task of an array: an admin's to any, a maintainer's of the
// job's team within its range, the owner's within their own or lower (see
// dspool.PriorityChanger). A job the caller may neither see nor change is
// not found, as for jobFor.
func (s *Server) setJobPriority(w http.ResponseWriter, r *http.Request) {
	var req api.JobPriority
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Priority == nil {
		s.fail(w, r, dspool.Invalid("priority", "give the new priority, e.g. {\"priority\": 10}"))
		return
	}
	p := *req.Priority
	ctx := r.Context()
	u := userFrom(r)
	j, err := s.loadRef(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c := dspool.PriorityChanger{Admin: u.Admin, Owner: j.User == u.Name}
	if t := dir.teams[j.Team]; t != nil {
		m := t.Member(u.Name)
		c.Maintainer, c.TeamRange = m != nil && m.Maintainer, t.Limits.Priority
	}
	if !c.Admin && !c.Owner && !c.Maintainer {
		s.fail(w, r, dspool.Errorf(dspool.ENotFound, "job %s not found: list yours with `dspool job list`", r.PathValue("id")))
		return
	}
	if c.Owner {
		if c.OwnerBounds, err = s.priorityBounds(ctx, j.User, j.Team, false); err != nil && dspool.ErrorCode(err) != dspool.EInvalid {
			s.fail(w, r, err)
			return
		}
	}
	if err := c.CheckChange(j.User, j.Team, j.Priority, p); err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.db.SetPriority(ctx, j.ID, j.Array != nil, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if n == 0 {
		what := fmt.Sprintf("job %s is %s", j.Ref(), j.State)
		if j.Array != nil {
			what = fmt.Sprintf("array %d has no queued task", j.ID)
		}
		s.fail(w, r, dspool.Errorf(dspool.EConflict, "%s: only a queued job's priority can change", what))
		return
	}
	target, detail := "job "+j.Ref(), fmt.Sprintf("priority %d to %d", j.Priority, p)
	if j.Array != nil {
		target, detail = fmt.Sprintf("array %d", j.ID), detail+fmt.Sprintf(" (%s)", dspool.Plural(n, "queued task"))
	}
	s.audit(r, "", dspool.AuditJobPriority, target, dspool.AuditSuccess, detail)
	s.Kick()
	if j.Array != nil {
		s.writeArray(w, r, j.ID)
		return
	}
	if j, err = s.db.Job(ctx, j.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	s.explainWait(j)
	s.notify(j.ID)
	writeJSON(w, http.StatusOK, j)
}
