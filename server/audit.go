package server

import (
	"context"
	"net/http"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/store"
)

// The audit log: who did what to whom, for the actions that decide who may
// do what (logins, tokens, keys, passwords, users, pools, join tokens,
// secrets) and for sessions ended by others. It is append-only (the store
// refuses changes) and read only by admins (GET /api/v1/audit).

// audit appends an entry about request r to the audit log. An empty actor
// means the user r authenticated as (dspool.AuditAnonymous when none); the
// remote address is r's client's (through trusted proxies). Target names what was acted on as "KIND NAME"
// ("user ada", "token 12", "pool gpu"); outcome is dspool.AuditSuccess or
// dspool.AuditFailure. A failure to write is logged, not returned: the
// action has happened, or been refused, either way.
func (s *Server) audit(r *http.Request, actor, action, target, outcome, detail string) {
	if actor == "" {
		actor = dspool.AuditAnonymous
		if u, ok := r.Context().Value(userKey).(*dspool.User); ok && u != nil {
			actor = u.Name
		}
	}
	s.Audit(context.WithoutCancel(r.Context()), dspool.AuditEntry{Actor: actor, Action: action, Target: target,
		Remote: s.client(r).Addr, Outcome: outcome, Detail: detail})
}

// Audit appends e to the audit log (At: now), for code that has no request
// (the SSH gateway). Refused logins are aggregated (loginFailures). A
// failure to write is logged, not returned.
func (s *Server) Audit(ctx context.Context, e dspool.AuditEntry) {
	if e.At.IsZero() {
		e.At = s.cfg.Now()
	}
	if e.Actor == "" {
		e.Actor = dspool.AuditAnonymous
	}
	if aggregated(e) {
		write, due := s.failures.add(e)
		for _, d := range due {
			s.writeAudit(ctx, d)
		}
		if !write {
			return
		}
	}
	s.writeAudit(ctx, e)
}

func (s *Server) writeAudit(ctx context.Context, e dspool.AuditEntry) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.db.AddAudit(ctx, e); err != nil {
		s.log.Error("audit log", "action", e.Action, "actor", e.Actor, "target", e.Target, "outcome", e.Outcome, "err", err)
	}
}

// outcome is the audit outcome of err.
func outcome(err error) string {
	if err != nil {
		return dspool.AuditFailure
	}
	return dspool.AuditSuccess
}

func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pg, err := parsePage(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := store.AuditFilter{User: q.Get("user"), Action: q.Get("action"), Limit: pg.limit, Before: pg.before}
	if f.Action != "" {
		if err := dspool.CheckAuditAction("action", f.Action); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if v := q.Get("since"); v != "" {
		t, err := dspool.ParseSince("since", v, s.cfg.Now())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		f.Since = t
	}
	es, err := s.db.AuditPage(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A name that is no user may still be one a refused login gave: it is
	// unknown only when nothing names it either.
	if len(es.Items) == 0 && f.Before == 0 && f.User != "" && f.User != dspool.AuditSystem && f.User != dspool.AuditAnonymous {
		if _, err := s.db.User(r.Context(), f.User); dspool.ErrorCode(err) == dspool.ENotFound {
			s.fail(w, r, dspool.Invalid("user", "no user %s, and no entry names it: see the users with `dspool user list`", f.User))
			return
		} else if err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, api.AuditList{Entries: es.Items, Next: es.Next})
}
