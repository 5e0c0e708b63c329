package api

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// The lists that grow without bound come a page at a time: at most Limit
// items (0: the server's default, 100; at most 10,000) before the cursor
// Before (0: from the newest), and the answer's Next is the Before of the
// page after it (0 on the last).

// SessionQuery selects sessions for SessionPage.
type SessionQuery struct {
	AllUsers bool // every user's (admins)
	Ended    bool // ended ones too
	Limit    int
	Before   int64
}

// SessionPage lists a page of interactive sessions, newest first.
func (c *Client) SessionPage(ctx context.Context, q SessionQuery) (*SessionList, error) {
	v := pageValues(q.Limit, q.Before)
	if q.AllUsers {
		v.Set("all", "true")
	}
	if q.Ended {
		v.Set("ended", "true")
	}
	var out SessionList
	return &out, c.Do(ctx, "GET", "/api/v1/sessions?"+v.Encode(), nil, &out)
}

// EventQuery selects a pool's events for PoolEventPage.
type EventQuery struct {
	Since  time.Duration // those of the last Since (0: all kept)
	Limit  int
	Before int64
}

// PoolEventPage returns a page of a pool's newest events, oldest first.
func (c *Client) PoolEventPage(ctx context.Context, pool string, q EventQuery) (*PoolEventList, error) {
	v := pageValues(q.Limit, q.Before)
	if q.Since > 0 {
		v.Set("since", q.Since.String())
	}
	var out PoolEventList
	return &out, c.Do(ctx, "GET", "/api/v1/pools/"+url.PathEscape(pool)+"/events?"+v.Encode(), nil, &out)
}

// AuditPage reads a page of the audit log (admin): the newest entries
// that q selects, oldest first.
func (c *Client) AuditPage(ctx context.Context, q AuditQuery) (*AuditList, error) {
	v := pageValues(q.Limit, q.Before)
	if q.Since > 0 {
		v.Set("since", q.Since.String())
	}
	if q.User != "" {
		v.Set("user", q.User)
	}
	if q.Action != "" {
		v.Set("action", q.Action)
	}
	var out AuditList
	return &out, c.Do(ctx, "GET", "/api/v1/audit?"+v.Encode(), nil, &out)
}

func pageValues(limit int, before int64) url.Values {
	v := url.Values{}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if before > 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	return v
}
