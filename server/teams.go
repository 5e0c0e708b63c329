package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/scheduler"
	"github.com/dspool/dspool/store"
)

// teamState is what the control plane keeps of teams and limits: the
// store's teams and limits, cached until they change, and why queued jobs
// wait on a limit, as the last autoscaler pass found.
type teamState struct {
	mu    sync.Mutex
	dir   *teamDir // nil: load from the store
	gen   int      // counts changes, so a load that raced one is not kept
	waits map[int64]limitWait
}

// teamDir is the teams, their members and limits, and users' own limits.
type teamDir struct {
	teams map[string]*dspool.Team
	of    map[string][]string // user -> the teams they are in, by name
	users map[string]dspool.Limits
}

// limitWait is why a queued job waits on a limit: held (running it would
// take its team or user over a limit), or only kept from bringing a node.
type limitWait struct {
	why  string
	held bool
}

// teamDirectory returns the cached teams and limits, loading them when a
// change dropped them.
func (s *Server) teamDirectory(ctx context.Context) (*teamDir, error) {
	s.teams.mu.Lock()
	dir, gen := s.teams.dir, s.teams.gen
	s.teams.mu.Unlock()
	if dir != nil {
		return dir, nil
	}
	teams, err := s.db.Teams(ctx)
	if err != nil {
		return nil, err
	}
	users, err := s.db.UserLimits(ctx)
	if err != nil {
		return nil, err
	}
	dir = &teamDir{teams: map[string]*dspool.Team{}, of: map[string][]string{}, users: users}
	for _, t := range teams {
		dir.teams[t.Name] = t
		for _, m := range t.Members {
			dir.of[m.User] = append(dir.of[m.User], t.Name)
		}
	}
	s.teams.mu.Lock()
	if s.teams.gen == gen {
		s.teams.dir = dir
	}
	s.teams.mu.Unlock()
	return dir, nil
}

// teamsChanged drops the cached teams and limits and starts a scheduling
// pass: a raised limit may let held work run.
func (s *Server) teamsChanged() {
	s.teams.mu.Lock()
	s.teams.dir = nil
	s.teams.gen++
	s.teams.mu.Unlock()
	s.Kick()
}

// userTeams returns the teams user is in, by name.
func (s *Server) userTeams(ctx context.Context, user string) ([]string, error) {
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(dir.of[user]), nil
}

// hasCaps reports whether l limits cpus, memory or GPUs (what the scheduler
// checks; Nodes is the autoscaler's).
func hasCaps(l dspool.Limits) bool { return l.CPUs != nil || l.Memory != nil || l.GPUs != nil }

// quotas returns the limits in force with what running attempts (from
// active) and live sessions hold now. It is empty when nothing is limited.
func (s *Server) quotas(dir *teamDir, active []store.ActiveJob) scheduler.Quotas {
	q := scheduler.Quotas{Users: map[string]scheduler.Quota{}, Teams: map[string]scheduler.Quota{}}
	for name, t := range dir.teams {
		if hasCaps(t.Limits) {
			q.Teams[name] = scheduler.Quota{Limits: t.Limits}
		}
	}
	for name, l := range dir.users {
		if hasCaps(l) {
			q.Users[name] = scheduler.Quota{Limits: l}
		}
	}
	arrays := arrayCaps(active)
	if len(q.Teams) == 0 && len(q.Users) == 0 {
		return scheduler.Quotas{Arrays: arrays}
	}
	q.Arrays = arrays
	use := func(user, team string, u scheduler.Usage) {
		if x, ok := q.Users[user]; ok {
			x.Used = x.Used.Add(u)
			q.Users[user] = x
		}
		if x, ok := q.Teams[team]; ok && team != "" {
			x.Used = x.Used.Add(u)
			q.Teams[team] = x
		}
	}
	for _, j := range active {
		if j.State == dspool.JobRunning {
			use(j.User, j.Team, scheduler.Usage{CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs})
		}
	}
	for _, h := range s.sessions.holds() {
		use(h.user, h.team, scheduler.Usage{CPUs: h.cpus, Memory: h.mem, GPUs: h.gpus})
	}
	return q
}

// arrayCaps returns the caps of the arrays with tasks in active, and how
// many of their tasks run.
func arrayCaps(active []store.ActiveJob) map[int64]scheduler.ArrayCap {
	var caps map[int64]scheduler.ArrayCap
	for _, j := range active {
		if j.Array == 0 || j.ArrayMax == 0 {
			continue
		}
		if caps == nil {
			caps = map[int64]scheduler.ArrayCap{}
		}
		c := caps[j.Array]
		c.Max = j.ArrayMax
		if j.State == dspool.JobRunning {
			c.Running++
		}
		caps[j.Array] = c
	}
	return caps
}

// jobTeam returns the team a job of u in pool p runs on behalf of, given
// the team it asks for ("" for the default), or why it may not run there.
func (s *Server) jobTeam(ctx context.Context, u *dspool.User, p *dspool.Pool, spec *dspool.JobSpec) (string, error) {
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return "", err
	}
	if spec.Team != "" && dir.teams[spec.Team] == nil {
		return "", dspool.Invalid("team", "no team named %s: see the teams with `dspool team list`", spec.Team)
	}
	team, err := dspool.TeamFor(p, dir.of[u.Name], spec.Team, u.Admin)
	if err != nil {
		return "", err
	}
	if t := dir.teams[team]; t != nil {
		if err := t.Limits.Fits("team "+team, spec.CPUs, spec.Memory, spec.GPUs); err != nil {
			return "", err
		}
	}
	if err := dir.users[u.Name].Fits("user "+u.Name, spec.CPUs, spec.Memory, spec.GPUs); err != nil {
		return "", err
	}
	return team, nil
}

// sessionTeam checks that user may open a session in p and returns the
// team it counts against: the first of the user's teams that may use p (by
// name) under whose limits, and the user's own, the session's reservation
// fits; none when the user is in no such team.
func (s *Server) sessionTeam(ctx context.Context, user *dspool.User, p *dspool.Pool, cpus dspool.MilliCPU, mem dspool.Bytes, gpus int) (string, error) {
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return "", err
	}
	mine := dir.of[user.Name]
	if err := p.CheckGrant(mine, user.Admin); err != nil {
		return "", err
	}
	teams := p.Granted(mine)
	sort.Strings(teams)
	if len(teams) == 0 {
		teams = []string{""}
	}
	q := scheduler.Quotas{}
	if len(dir.users) > 0 || len(dir.teams) > 0 {
		active, err := s.db.ActiveJobs(ctx)
		if err != nil {
			return "", err
		}
		q = s.quotas(dir, active)
	}
	first, see := "", ""
	for _, t := range teams {
		why, userLimit := q.Check(user.Name, t, scheduler.Usage{CPUs: cpus, Memory: mem, GPUs: gpus})
		if why == "" {
			return t, nil
		}
		if first == "" {
			first, see = why, "dspool team show "+t
			if userLimit {
				see = "dspool user limits " + user.Name
			}
		}
	}
	size := fmt.Sprintf("%s, %s", dspool.Plural(cpus, "cpu"), mem)
	if gpus > 0 {
		size += ", " + dspool.Plural(gpus, "gpu")
	}
	return "", dspool.Errorf(dspool.EUnavailable, "a session (%s) would go over a limit: %s; end some of that work, or ask an admin to raise the limit (`%s`)",
		size, first, see)
}

// setLimitWaits publishes why queued jobs wait on limits.
func (s *Server) setLimitWaits(w map[int64]limitWait) {
	s.teams.mu.Lock()
	s.teams.waits = w
	s.teams.mu.Unlock()
}

// explainWait fills a queued job's Waiting: the limit it waits on, or how
// the wait for a node of its pool goes.
func (s *Server) explainWait(j *dspool.Job) {
	if j.State != dspool.JobQueued {
		return
	}
	if why := waitingFor(j); why != "" {
		j.Waiting = why
		return
	}
	s.teams.mu.Lock()
	w, ok := s.teams.waits[j.ID]
	s.teams.mu.Unlock()
	if ok && w.held {
		j.Waiting, j.Held = w.why, true
		return
	}
	j.Waiting = s.scaler.jobWaiting(j.Pool)
	if ok && j.Waiting == "" {
		j.Waiting = w.why
	}
	if why := s.closed.why(j.ID); why != "" {
		j.Waiting = strings.TrimPrefix(j.Waiting+"; "+why, "; ")
	}
	if why := s.gpuWaiting(j); why != "" {
		j.Waiting = strings.TrimPrefix(j.Waiting+"; "+why, "; ")
	}
}

// checkPoolTeams refuses pools granted to teams that do not exist.
func (s *Server) checkPoolTeams(ctx context.Context, pools []*dspool.Pool) error {
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return err
	}
	for i, p := range pools {
		for k, t := range p.Teams {
			if dir.teams[t] == nil {
				return dspool.Invalid(fmt.Sprintf("pools[%d].teams[%d]", i, k), "no team named %s: create it first with `dspool team create %s`", t, t)
			}
		}
	}
	return nil
}

// auditTeam records a change to teams or limits that was made.
func (s *Server) auditTeam(r *http.Request, action, target, detail string) {
	s.audit(r, "", action, target, dspool.AuditSuccess, detail)
}

func (s *Server) listTeams(w http.ResponseWriter, r *http.Request) {
	ts, err := s.db.Teams(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if ts == nil {
		ts = []*dspool.Team{}
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) getTeam(w http.ResponseWriter, r *http.Request) {
	t, err := s.db.Team(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) createTeam(w http.ResponseWriter, r *http.Request) {
	var req api.TeamCreate
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.db.CreateTeam(r.Context(), req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.teamsChanged()
	s.auditTeam(r, dspool.AuditTeamCreate, "team "+t.Name, "")
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) deleteTeam(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	pools, err := s.db.Pools(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var granted []string
	for _, p := range pools {
		if slices.Contains(p.Teams, name) {
			granted = append(granted, p.Name)
		}
	}
	if len(granted) > 0 {
		s.fail(w, r, dspool.Errorf(dspool.EConflict, "team %s may use pool %s: take it out of the pools' teams first (`dspool pool apply`), then delete it",
			name, strings.Join(granted, ", ")))
		return
	}
	if err := s.db.DeleteTeam(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.teamsChanged()
	s.auditTeam(r, dspool.AuditTeamDelete, "team "+name, "")
	w.WriteHeader(http.StatusNoContent)
}

// mayManage returns nil when caller may make this change to team's
// members: an admin may make any; a maintainer of the team may add and
// remove members who do not maintain it, and nothing more.
func mayManage(caller *dspool.User, t *dspool.Team, user string, maintainer bool) error {
	if caller.Admin {
		return nil
	}
	if m := t.Member(caller.Name); m == nil || !m.Maintainer {
		return dspool.Errorf(dspool.EForbidden, "only an admin or a maintainer of team %s changes its members", t.Name)
	}
	if maintainer {
		return dspool.Errorf(dspool.EForbidden, "only an admin makes a member a maintainer of team %s", t.Name)
	}
	if m := t.Member(user); m != nil && m.Maintainer {
		return dspool.Errorf(dspool.EForbidden, "%s maintains team %s: only an admin removes or changes a maintainer", user, t.Name)
	}
	return nil
}

func (s *Server) putTeamMember(w http.ResponseWriter, r *http.Request) {
	var req api.TeamMemberSet
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	name, user := r.PathValue("name"), r.PathValue("user")
	t, err := s.db.Team(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := mayManage(userFrom(r), t, user, req.Maintainer); err != nil {
		s.audit(r, "", dspool.AuditTeamMemberAdd, "team "+name, dspool.AuditFailure, "member "+user+": "+dspool.Message(err))
		s.fail(w, r, err)
		return
	}
	before := t.Member(user)
	if before != nil && before.Maintainer == req.Maintainer {
		writeJSON(w, http.StatusOK, t) // nothing changes, so nothing is audited
		return
	}
	t, err = s.db.AddTeamMember(r.Context(), name, user, req.Maintainer)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.teamsChanged()
	detail := "member " + user
	switch {
	case before != nil && req.Maintainer:
		detail += ", now a maintainer"
	case before != nil:
		detail += ", no longer a maintainer"
	case req.Maintainer:
		detail += " (maintainer)"
	}
	s.auditTeam(r, dspool.AuditTeamMemberAdd, "team "+name, detail)
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) deleteTeamMember(w http.ResponseWriter, r *http.Request) {
	name, user := r.PathValue("name"), r.PathValue("user")
	t, err := s.db.Team(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := mayManage(userFrom(r), t, user, false); err != nil {
		s.audit(r, "", dspool.AuditTeamMemberRemove, "team "+name, dspool.AuditFailure, "member "+user+": "+dspool.Message(err))
		s.fail(w, r, err)
		return
	}
	t, err = s.db.RemoveTeamMember(r.Context(), name, user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.teamsChanged()
	s.auditTeam(r, dspool.AuditTeamMemberRemove, "team "+name, "member "+user)
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) setTeamLimits(w http.ResponseWriter, r *http.Request) {
	var l dspool.Limits
	if err := readJSON(r, &l); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := l.Validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.db.SetTeamLimits(r.Context(), r.PathValue("name"), l)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.teamsChanged()
	s.auditTeam(r, dspool.AuditTeamLimits, "team "+t.Name, l.String())
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) getUserLimits(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if u := userFrom(r); !u.Admin && u.Name != name {
		s.fail(w, r, dspool.Errorf(dspool.EForbidden, "only an admin sees another user's limits"))
		return
	}
	if _, err := s.db.User(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	dir, err := s.teamDirectory(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.UserLimits{User: name, Limits: dir.users[name], Teams: dir.of[name]})
}

func (s *Server) setUserLimits(w http.ResponseWriter, r *http.Request) {
	var l dspool.Limits
	if err := readJSON(r, &l); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := l.Validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	if err := s.db.SetUserLimits(r.Context(), name, l); err != nil {
		s.fail(w, r, err)
		return
	}
	s.teamsChanged()
	s.auditTeam(r, dspool.AuditUserLimits, "user "+name, l.String())
	dir, err := s.teamDirectory(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.UserLimits{User: name, Limits: dir.users[name], Teams: dir.of[name]})
}
