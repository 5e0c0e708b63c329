package web

import (
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

type adminData struct {
	Users []*dspool.User
	// Limits are each user's own limits, by name.
	Limits map[string]dspool.Limits
	Teams  []*dspool.Team
	Tokens []*dspool.Token
}

// admin shows users, teams and their limits, and every API token; the
// API refuses all three to anyone but an admin.
func (d *Dashboard) admin(v *visit) (string, any, error) {
	var data adminData
	var err error
	if data.Users, err = v.api.Users(v.r.Context()); err == nil {
		if data.Teams, err = v.api.Teams(v.r.Context()); err == nil {
			data.Tokens, err = v.api.Tokens(v.r.Context(), "", true)
		}
	}
	if err != nil {
		return "", nil, err
	}
	data.Limits = map[string]dspool.Limits{}
	for _, u := range data.Users {
		l, err := v.api.UserLimits(v.r.Context(), u.Name)
		if err != nil {
			return "", nil, err
		}
		data.Limits[u.Name] = l.Limits
	}
	return "Admin", data, nil
}

type auditData struct {
	Entries []*dspool.AuditEntry
	// The filters as asked.
	User, Action, Since string
	// Older is the address of the page of older entries ("": none).
	Older string
}

func (d *Dashboard) audit(v *visit) (string, any, error) {
	q := v.r.URL.Query()
	data := auditData{User: q.Get("user"), Action: q.Get("action"), Since: q.Get("since")}
	aq := api.AuditQuery{User: data.User, Action: data.Action, Limit: 200}
	if data.Since != "" {
		span, err := dspool.ParseSpan(data.Since)
		if err != nil {
			return "", nil, dspool.Invalid("since", "%v", err)
		}
		aq.Since = span
	}
	var err error
	if aq.Before, err = before(q); err != nil {
		return "", nil, err
	}
	l, err := v.api.AuditPage(v.r.Context(), aq)
	if err != nil {
		return "", nil, err
	}
	data.Entries = l.Entries
	slices.Reverse(data.Entries) // newest first
	data.Older = older(v.r.URL, l.Next)
	return "Audit log", data, nil
}

// expired reports whether a token's expiry has passed.
func expired(t *dspool.Token) bool { return t.ExpiresAt != nil && t.ExpiresAt.Before(time.Now()) }
