package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// Retention: what has ended goes once it is older than its retention
// (dspool.Retention), a batch at a time. Each Prune method deletes at most
// limit rows of what it prunes in one short transaction and says how many
// went; the caller loops, pausing between batches, so that the writer is
// never held for long (docs/decisions/0022).
//
// The audit log stays append-only for everything but its oldest entries:
// its trigger refuses to delete an entry at or after the mark
// audit_pruned_before (meta), which PruneAudit moves forward and triggers
// keep from moving back.

const retentionMigration = `CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;
	CREATE INDEX pool_events_at ON pool_events(at);
	DROP TRIGGER audit_no_delete;
	CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
		WHEN old.at >= COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'audit_pruned_before'), 0)
		BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: only entries older than its retention are pruned'); END;
	CREATE TRIGGER audit_mark_forward BEFORE UPDATE ON meta
		WHEN old.key = 'audit_pruned_before' AND (new.key != old.key OR CAST(new.value AS INTEGER) < CAST(old.value AS INTEGER))
		BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: its pruning mark only moves forward'); END;
	CREATE TRIGGER audit_mark_kept BEFORE DELETE ON meta WHEN old.key = 'audit_pruned_before'
		BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: its pruning mark only moves forward'); END;`

// What each prune finds, oldest first, by the index that keeps it from
// reading the rest (retention_internal_test.go checks the plans); each
// takes (before, limit). The finished states are written in (a closed
// set), so that SQLite proves the partial index applies.
const (
	oldJobs     = `SELECT id FROM jobs WHERE finished_at < ? AND state IN ('succeeded', 'failed', 'cancelled') ORDER BY finished_at LIMIT ?`
	oldSessions = `SELECT rowid FROM sessions WHERE ended_at < ? AND state = 'ended' ORDER BY ended_at LIMIT ?`
	goneArrays  = `SELECT a.id FROM job_arrays a WHERE NOT EXISTS (SELECT 1 FROM jobs t WHERE t.array_id != 0 AND t.array_id = a.id)`
	oldEvents   = `SELECT id FROM pool_events WHERE at < ? ORDER BY at LIMIT ?`
	oldAudit    = `SELECT id, at, actor, action, target, remote, outcome, detail FROM audit WHERE at < ? ORDER BY at, id LIMIT ?`
)

// PruneJobs deletes up to limit finished jobs that finished before before,
// oldest first, with their attempts, and returns how many went.
func (db *DB) PruneJobs(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM attempts WHERE job_id IN (`+oldJobs+`)`, unixNano(before), limit); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM job_deps WHERE waiter_array = 0 AND waiter IN (`+oldJobs+`)`, unixNano(before), limit); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE id IN (`+oldJobs+`)`, unixNano(before), limit)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		// An array goes with its last task.
		if _, err := tx.ExecContext(ctx, `DELETE FROM job_deps WHERE waiter_array = 1 AND waiter IN (`+goneArrays+`)`); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM job_arrays WHERE id IN (`+goneArrays+`)`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune jobs finished before %s: %w", before.Format(time.RFC3339), err)
	}
	return int(n), nil
}

// PruneSessions deletes up to limit sessions that ended before before,
// oldest first, and returns how many went.
func (db *DB) PruneSessions(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := db.exec(ctx, `DELETE FROM sessions WHERE rowid IN (`+oldSessions+`)`, unixNano(before), limit)
	if err != nil {
		return 0, fmt.Errorf("prune sessions ended before %s: %w", before.Format(time.RFC3339), err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// PrunePoolEvents deletes up to limit pool events from before before,
// oldest first, and returns how many went.
func (db *DB) PrunePoolEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	// AddPoolEvent keeps each pool to its newest events by a count it
	// caches: it is read again after events go.
	db.events.mu.Lock()
	defer db.events.mu.Unlock()
	res, err := db.exec(ctx, `DELETE FROM pool_events WHERE id IN (`+oldEvents+`)`, unixNano(before), limit)
	if err != nil {
		return 0, fmt.Errorf("prune pool events before %s: %w", before.Format(time.RFC3339), err)
	}
	n, err := res.RowsAffected()
	if n > 0 {
		db.events.n = nil
	}
	return int(n), err
}

// OldAudit returns up to limit of the oldest audit entries from before
// before, in the order of their time, then id: the order PruneAudit's
// caller exports them in.
func (db *DB) OldAudit(ctx context.Context, before time.Time, limit int) ([]*dspool.AuditEntry, error) {
	rows, err := db.r.QueryContext(ctx, oldAudit, unixNano(before), limit)
	if err != nil {
		return nil, fmt.Errorf("read the audit log before %s: %w", before.Format(time.RFC3339), err)
	}
	defer rows.Close()
	return scanAudit(rows)
}

// PruneAudit deletes the audit entries ids that are from before before,
// moving the log's pruning mark forward to before, and returns how many
// went.
func (db *DB) PruneAudit(ctx context.Context, before time.Time, ids []int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	var n int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('audit_pruned_before', ?)
			ON CONFLICT (key) DO UPDATE SET value = `+db.sql(
			`max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))`,
			`CAST(GREATEST(CAST(meta.value AS BIGINT), CAST(excluded.value AS BIGINT)) AS TEXT)`),
			fmt.Sprint(unixNano(before))); err != nil {
			return err
		}
		args := make([]any, 0, len(ids)+1)
		args = append(args, unixNano(before))
		for _, id := range ids {
			args = append(args, id)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM audit WHERE at < ? AND id IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune the audit log before %s: %w", before.Format(time.RFC3339), err)
	}
	return int(n), nil
}
