package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

type adminData struct {
	Users  []*dspool.User
	Teams  []*dspool.Team
	Tokens []*dspool.Token
}

// admin shows users, teams and their limits, and every API token; the
// API refuses all three to anyone but an admin.
func (d *Dashboard) admin(w http.ResponseWriter, r *http.Request) {
	v := d.login(w, r)
	if v == nil {
		return
	}
	var data adminData
	var err error
	if data.Users, err = v.api.Users(r.Context()); err == nil {
		if data.Teams, err = v.api.Teams(r.Context()); err == nil {
			data.Tokens, err = v.api.Tokens(r.Context(), "", true)
		}
	}
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	d.render(w, r, http.StatusOK, "admin", v, "Admin", data)
}

type auditData struct {
	Entries []*dspool.AuditEntry
	// The filters as asked.
	User, Action, Since string
	// Older is the address of the page of older entries ("": none).
	Older string
}

func (d *Dashboard) audit(w http.ResponseWriter, r *http.Request) {
	v := d.login(w, r)
	if v == nil {
		return
	}
	q := r.URL.Query()
	data := auditData{User: q.Get("user"), Action: q.Get("action"), Since: q.Get("since")}
	aq := api.AuditQuery{User: data.User, Action: data.Action, Limit: 200}
	if data.Since != "" {
		span, err := dspool.ParseSpan(data.Since)
		if err != nil {
			d.fail(w, r, v, dspool.Invalid("since", "%v", err))
			return
		}
		aq.Since = span
	}
	if b, err := strconv.ParseInt(q.Get("before"), 10, 64); err == nil && b > 0 {
		aq.Before = b
	}
	l, err := v.api.AuditPage(r.Context(), aq)
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	data.Entries = l.Entries
	slices.Reverse(data.Entries) // newest first
	if l.Next != 0 {
		next := url.Values{"before": {strconv.FormatInt(l.Next, 10)}}
		for _, k := range []string{"user", "action", "since"} {
			if q.Get(k) != "" {
				next.Set(k, q.Get(k))
			}
		}
		data.Older = "/admin/audit?" + next.Encode()
	}
	d.render(w, r, http.StatusOK, "audit", v, "Audit log", data)
}

// expired reports whether a token's expiry has passed.
func expired(t *dspool.Token) bool { return t.ExpiresAt != nil && t.ExpiresAt.Before(time.Now()) }
