package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// Control planes on one PostgreSQL database take turns (docs/decisions/
// 0039-leading-control-planes.md): one leads while it holds the lease and
// renews it; the others stand by and take it once it has expired. Each
// taking raises the lease's term, the fencing token: a store fenced at a
// term (Fence) writes only while that term leads, checked in the write's
// own transaction, so a leader that lost the lead (paused, cut off) cannot
// write after another has taken it. Times are the database's clock, which
// every control plane shares.

const leasesMigration = `CREATE TABLE leases (
	name TEXT PRIMARY KEY, holder TEXT NOT NULL, address TEXT NOT NULL,
	term BIGINT NOT NULL, expires_at BIGINT NOT NULL);`

// Lease is who leads.
type Lease struct {
	// Holder names the control plane that holds it (its host, process and
	// start); Address is where it serves the API.
	Holder, Address string
	// Term counts the takings of the lease: the fencing token.
	Term int64
	// Expires is when it goes to whoever asks, unless renewed; Left is how
	// long until then by the database's clock.
	Expires time.Time
	Left    time.Duration
}

// ErrLostLead is a write of a control plane that no longer leads.
var ErrLostLead = &dspool.Error{Code: dspool.EUnavailable,
	Message: "this control plane no longer leads (another took the lead): nothing was written; ask the leader"}

// dbNow is the database's clock in nanoseconds since the epoch.
func (db *DB) dbNow() string {
	return db.sql(`CAST((julianday('now') - 2440587.5) * 86400000000000.0 AS INTEGER)`,
		`CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT)`)
}

// Campaign takes the lease for holder, serving at address, for ttl, when
// nobody holds it or its holder let it expire; led says whether it did. A
// taking raises the term. Either way it returns the lease as it is.
func (db *DB) Campaign(ctx context.Context, holder, address string, ttl time.Duration) (l Lease, led bool, err error) {
	now := db.dbNow()
	err = db.leaseTx(ctx, func(tx *sql.Tx) error {
		var term int64
		err := tx.QueryRowContext(ctx, `INSERT INTO leases (name, holder, address, term, expires_at)
			VALUES ('leader', ?, ?, 1, `+now+` + ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, address = excluded.address,
				term = leases.term + 1, expires_at = excluded.expires_at
			WHERE leases.expires_at < `+now+`
			RETURNING term`, holder, address, ttl.Nanoseconds()).Scan(&term)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		led = err == nil
		l, err = db.lease(ctx, tx)
		return err
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("campaign for the lead: %w", err)
	}
	return l, led, nil
}

// Renew extends the lease of term, held by holder, by ttl from now. It
// fails with ErrLostLead once another has taken it.
func (db *DB) Renew(ctx context.Context, term int64, holder string, ttl time.Duration) error {
	return db.leaseTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = `+db.dbNow()+` + ? WHERE name = 'leader' AND term = ? AND holder = ?`,
			ttl.Nanoseconds(), term, holder)
		if err != nil {
			return fmt.Errorf("renew the lead: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrLostLead
		}
		return nil
	})
}

// Resign gives the lease of term up, so that a control plane standing by
// takes it at once.
func (db *DB) Resign(ctx context.Context, term int64, holder string) error {
	return db.leaseTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = 0 WHERE name = 'leader' AND term = ? AND holder = ?`, term, holder)
		return err
	})
}

// Leader is the lease as it is; a zero Lease when nobody ever led.
func (db *DB) Leader(ctx context.Context) (Lease, error) {
	return db.lease(ctx, db.r)
}

func (db *DB) lease(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (Lease, error) {
	var l Lease
	var expires, now int64
	err := q.QueryRowContext(ctx, `SELECT holder, address, term, expires_at, `+db.dbNow()+` FROM leases WHERE name = 'leader'`).
		Scan(&l.Holder, &l.Address, &l.Term, &expires, &now)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, nil
	}
	if err != nil {
		return Lease{}, err
	}
	l.Expires, l.Left = time.Unix(0, expires).UTC(), time.Duration(expires-now)
	return l, nil
}

// Fence makes every later write of this store check, in its transaction,
// that term still leads, and fail with ErrLostLead once it does not. On
// PostgreSQL the check holds the lease's row (FOR SHARE) until the write
// commits, so that the lease cannot change hands in between.
func (db *DB) Fence(term int64) { db.fence.Store(term) }

// leading checks the fence in tx: that the term it names still leads.
func (db *DB) leading(ctx context.Context, tx *sql.Tx) error {
	term := db.fence.Load()
	if term == 0 {
		return nil
	}
	var got int64
	err := tx.QueryRowContext(ctx, `SELECT term FROM leases WHERE name = 'leader' AND term = ?`+db.sql("", " FOR SHARE"), term).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrLostLead
	}
	return err
}

// leaseTx runs fn in a transaction on the lease's connection.
func (db *DB) leaseTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if db.lw == nil {
		return db.commitUnfenced(ctx, fn)
	}
	return commitOn(ctx, db.lw, fn)
}
