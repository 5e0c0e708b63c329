package store

import (
	"context"
	"errors"
	"time"

	"github.com/dspool/dspool"
)

// Pages of the lists that grow without bound: jobs, sessions, pool events
// and the audit log (docs/decisions/0023). A page is asked for with one
// item more than its limit: that one, when it comes, says that there is a
// next page, and is not returned.

// Page is one page of a list. Next is the cursor of the page after it (its
// Before), 0 when this is the last.
type Page[T any] struct {
	Items []T
	Next  int64
}

// errNoLimit refuses a page asked for without a limit.
var errNoLimit = errors.New("a page needs a limit")

// newestFirst makes a page of items asked for with limit+1, newest first:
// the extra item is the last.
func newestFirst[T any](items []T, limit int, key func(T) int64) Page[T] {
	if len(items) <= limit {
		return Page[T]{Items: items}
	}
	items = items[:limit]
	return Page[T]{Items: items, Next: key(items[limit-1])}
}

// oldestFirst makes a page of the newest items asked for with limit+1,
// shown oldest first: the extra item is the first.
func oldestFirst[T any](items []T, limit int, key func(T) int64) Page[T] {
	if len(items) <= limit {
		return Page[T]{Items: items}
	}
	items = items[1:]
	return Page[T]{Items: items, Next: key(items[0])}
}

// JobPage is a page of ListJobs, newest first; f.Limit must be set.
func (db *DB) JobPage(ctx context.Context, f JobFilter) (Page[*dspool.Job], error) {
	if f.Limit <= 0 {
		return Page[*dspool.Job]{}, errNoLimit
	}
	limit := f.Limit
	f.Limit++
	jobs, err := db.ListJobs(ctx, f)
	if err != nil {
		return Page[*dspool.Job]{}, err
	}
	if jobs == nil {
		jobs = []*dspool.Job{}
	}
	return newestFirst(jobs, limit, func(j *dspool.Job) int64 { return j.ID }), nil
}

// sessionRow is a session and its place in the table, the cursor of
// SessionPage.
type sessionRow struct {
	s   *dspool.Session
	seq int64
}

// SessionPage is a page of sessions, newest first (in the order they were
// made); f.Limit must be set.
func (db *DB) SessionPage(ctx context.Context, f SessionFilter) (Page[*dspool.Session], error) {
	if f.Limit <= 0 {
		return Page[*dspool.Session]{}, errNoLimit
	}
	q := `SELECT s.rowid, ` + sessionCols + sessionFrom + ` WHERE 1=1`
	var args []any
	if f.User != "" {
		q += ` AND u.name = ?`
		args = append(args, f.User)
	}
	if f.Active {
		q += ` AND s.state != 'ended'`
	}
	if f.Before > 0 {
		q += ` AND s.rowid < ?`
		args = append(args, f.Before)
	}
	q += ` ORDER BY s.rowid DESC LIMIT ?`
	args = append(args, f.Limit+1)
	rows, err := queryAll(ctx, db.r, func(s scanner) (sessionRow, error) {
		var r sessionRow
		var err error
		r.s, err = scanSession(withRowid{s, &r.seq})
		return r, err
	}, q, args...)
	if err != nil {
		return Page[*dspool.Session]{}, err
	}
	p := newestFirst(rows, f.Limit, func(r sessionRow) int64 { return r.seq })
	out := Page[*dspool.Session]{Items: make([]*dspool.Session, len(p.Items)), Next: p.Next}
	for i, r := range p.Items {
		out.Items[i] = r.s
	}
	return out, nil
}

// withRowid scans a row's rowid, its first column, before the rest.
type withRowid struct {
	scanner
	rowid *int64
}

func (w withRowid) Scan(dest ...any) error { return w.scanner.Scan(append([]any{w.rowid}, dest...)...) }

// PoolEventPage is a page of a pool's events at or after since (every one
// when zero) and before the cursor before (0: the newest): the newest limit
// of them, oldest first.
func (db *DB) PoolEventPage(ctx context.Context, pool string, since time.Time, before int64, limit int) (Page[*dspool.PoolEvent], error) {
	if limit <= 0 {
		return Page[*dspool.PoolEvent]{}, errNoLimit
	}
	evs, err := db.poolEvents(ctx, pool, since, before, limit+1)
	if err != nil {
		return Page[*dspool.PoolEvent]{}, err
	}
	return oldestFirst(evs, limit, func(e *dspool.PoolEvent) int64 { return e.ID }), nil
}

// AuditPage is a page of the audit log: the newest f.Limit entries that f
// selects, oldest first; f.Limit must be set.
func (db *DB) AuditPage(ctx context.Context, f AuditFilter) (Page[*dspool.AuditEntry], error) {
	if f.Limit <= 0 {
		return Page[*dspool.AuditEntry]{}, errNoLimit
	}
	limit := f.Limit
	f.Limit++
	es, err := db.audit(ctx, f)
	if err != nil {
		return Page[*dspool.AuditEntry]{}, err
	}
	return oldestFirst(es, limit, func(e *dspool.AuditEntry) int64 { return e.ID }), nil
}
