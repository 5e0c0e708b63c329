package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// The audit log is append-only: triggers refuse UPDATE on it, and DELETE
// of any entry but those older than the mark that its retention moves
// forward (retention.go), whoever asks. Its entries are few (logins and
// changes to who may do what, not every request), so it is kept whole by
// default.

// MaxAudit bounds the entries one read of the audit log returns.
const MaxAudit = 10000

// AddAudit appends e to the audit log; a zero At is now. Long fields are
// cut, so that no caller can make an entry huge.
func (db *DB) AddAudit(ctx context.Context, e dspool.AuditEntry) error {
	if e.At.IsZero() {
		e.At = db.now()
	}
	if e.Actor == "" {
		e.Actor = dspool.AuditAnonymous
	}
	_, err := db.exec(ctx, `INSERT INTO audit (at, actor, action, target, remote, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		unixNano(e.At), cut(e.Actor, 200), cut(e.Action, 100), cut(e.Target, 500), cut(e.Remote, 200), cut(e.Outcome, 50), cut(e.Detail, 2000))
	if err != nil {
		return fmt.Errorf("append to the audit log (%s %s): %w", e.Action, e.Target, err)
	}
	return nil
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// AuditFilter selects entries of the audit log. Zero values select all.
type AuditFilter struct {
	Since time.Time
	// User selects the entries whose actor is User, whose target is
	// "user User", or whose detail starts "of user User" (their tokens,
	// keys and sessions).
	User string
	// Action selects an action ("login.ssh") or a family ("login").
	Action string
	// Limit is how many of the newest entries to return (default and at
	// most MaxAudit).
	Limit int
	// Before selects the entries before this id (0: all).
	Before int64
}

// Audit returns the newest entries that f selects, oldest first.
func (db *DB) Audit(ctx context.Context, f AuditFilter) ([]*dspool.AuditEntry, error) {
	if f.Limit <= 0 || f.Limit > MaxAudit {
		f.Limit = MaxAudit
	}
	return db.audit(ctx, f)
}

// audit is Audit with f.Limit as it is.
func (db *DB) audit(ctx context.Context, f AuditFilter) ([]*dspool.AuditEntry, error) {
	q := `SELECT id, at, actor, action, target, remote, outcome, detail FROM audit WHERE at >= ?`
	args := []any{unixNano(f.Since)}
	if f.Since.IsZero() {
		args[0] = int64(0)
	}
	if f.User != "" {
		of := "of user " + f.User
		q += ` AND (actor = ? OR target = ? OR detail = ? OR substr(detail, 1, ?) = ?)`
		args = append(args, f.User, "user "+f.User, of, len(of)+2, of+", ")
	}
	if f.Action != "" {
		q += ` AND (action = ? OR substr(action, 1, ?) = ?)`
		args = append(args, f.Action, len(f.Action)+1, f.Action+".")
	}
	if f.Before > 0 {
		q += ` AND id < ?`
		args = append(args, f.Before)
	}
	q = `SELECT * FROM (` + q + ` ORDER BY id DESC LIMIT ?) newest ORDER BY id`
	args = append(args, f.Limit)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAudit(rows)
}

// scanAudit reads entries of the audit log: id, at, actor, action, target,
// remote, outcome, detail.
func scanAudit(rows *sql.Rows) ([]*dspool.AuditEntry, error) {
	out := []*dspool.AuditEntry{}
	for rows.Next() {
		var e dspool.AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &e.Remote, &e.Outcome, &e.Detail); err != nil {
			return nil, err
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, &e)
	}
	return out, rows.Err()
}
