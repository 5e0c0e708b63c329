package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/dspool/dspool"
)

// Join tokens: a secret an agent presents once to join a pool. Only its
// hash is kept, with when it expires and whether it was revoked; its id
// is the row's.

// CreateJoinToken stores the hash of a join token for pool that does not
// expire, made by the control plane itself.
func (db *DB) CreateJoinToken(ctx context.Context, pool string, hash []byte) error {
	_, err := db.AddJoinToken(ctx, pool, hash, "", nil)
	return err
}

// AddJoinToken stores the hash of a join token for pool, made by by, that
// expires at expires (nil: never).
func (db *DB) AddJoinToken(ctx context.Context, pool string, hash []byte, by string, expires *time.Time) (*dspool.JoinToken, error) {
	t := &dspool.JoinToken{Pool: pool, CreatedAt: db.now().UTC(), CreatedBy: by, ExpiresAt: expires}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRow(`INSERT INTO join_tokens (hash, pool, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING rowid`,
			hash, pool, unixNano(t.CreatedAt), by, nullTime(expires)).Scan(&t.ID)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// AddSingleUseJoinTokens stores the hashes of join tokens for pool that
// each join one node, once, until expires: those Grow hands to new
// machines. Single-use tokens of any pool that expired before now go.
func (db *DB) AddSingleUseJoinTokens(ctx context.Context, pool string, hashes [][]byte, expires time.Time) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		now := db.now().UTC()
		if _, err := tx.Exec(`DELETE FROM join_tokens WHERE single_use = 1 AND expires_at <= ?`, unixNano(now)); err != nil {
			return err
		}
		for _, h := range hashes {
			if _, err := tx.Exec(`INSERT INTO join_tokens (hash, pool, created_at, created_by, expires_at, single_use) VALUES (?, ?, ?, 'autoscaler', ?, 1)`,
				h, pool, unixNano(now), unixNano(expires)); err != nil {
				return err
			}
		}
		return nil
	})
}

// TakeJoinToken returns the pool a join token with this hash joins, as
// JoinTokenPool does, and uses it up when it is single-use: a second
// node cannot join with it.
func (db *DB) TakeJoinToken(ctx context.Context, hash []byte) (string, error) {
	pool, err := db.JoinTokenPool(ctx, hash)
	if err != nil {
		return "", err
	}
	err = db.tx(ctx, func(tx *sql.Tx) error {
		var single int
		var used sql.NullInt64
		if err := tx.QueryRow(`SELECT single_use, used_at FROM join_tokens WHERE hash = ?`, hash).Scan(&single, &used); err != nil {
			return err
		}
		if single == 0 {
			return nil
		}
		if used.Valid {
			return dspool.Errorf(dspool.EUnauthorized, "this join token joined a node at %s and joins no other: it was made for one machine",
				fromNano(used).Local().Format(time.DateTime))
		}
		_, err := tx.Exec(`UPDATE join_tokens SET used_at = ? WHERE hash = ?`, unixNano(db.now()), hash)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) { // revoked with its pool in between
		return db.JoinTokenPool(ctx, hash)
	}
	if err != nil {
		return "", err
	}
	return pool, nil
}

// JoinTokenPool returns the pool a join token with this hash joins, or an
// EUnauthorized error that says why it does not: unknown, revoked or
// expired.
func (db *DB) JoinTokenPool(ctx context.Context, hash []byte) (string, error) {
	var pool string
	var expires, revoked sql.NullInt64
	err := db.r.QueryRowContext(ctx, `SELECT pool, expires_at, revoked_at FROM join_tokens WHERE hash = ?`, hash).Scan(&pool, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", dspool.Errorf(dspool.EUnauthorized, "join token not recognised: print a new one with `dspool pool join-token POOL`")
	}
	if err != nil {
		return "", err
	}
	if revoked.Valid {
		return "", dspool.Errorf(dspool.EUnauthorized, "this join token was revoked at %s: ask an admin for a new one: dspool pool join-token %s",
			fromNano(revoked).Local().Format(time.DateTime), pool)
	}
	if expires.Valid && !db.now().Before(*fromNano(expires)) {
		return "", dspool.Errorf(dspool.EUnauthorized, "this join token expired at %s: ask an admin for a new one: dspool pool join-token %s",
			fromNano(expires).Local().Format(time.DateTime), pool)
	}
	return pool, nil
}

const joinTokenCols = `rowid, pool, created_at, created_by, expires_at, revoked_at`

func scanJoinToken(s scanner) (*dspool.JoinToken, error) {
	var t dspool.JoinToken
	var created, expires, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.Pool, &created, &t.CreatedBy, &expires, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt = *fromNano(created)
	t.ExpiresAt, t.RevokedAt = fromNano(expires), fromNano(revoked)
	return &t, nil
}

// JoinTokens lists the join tokens of pool, oldest first.
func (db *DB) JoinTokens(ctx context.Context, pool string) ([]*dspool.JoinToken, error) {
	// The autoscaler's single-use tokens are not listed: there is one per
	// machine asked for, and they expire within the hour.
	return queryAll(ctx, db.r, scanJoinToken, `SELECT `+joinTokenCols+` FROM join_tokens WHERE pool = ? AND single_use = 0 ORDER BY rowid`, pool)
}

// RevokeJoinTokens revokes the join token id of pool, or every one of
// pool's that is not revoked yet when id is 0, and returns those it
// revoked. Revoking a revoked token changes nothing; an unknown id is an
// ENotFound error.
func (db *DB) RevokeJoinTokens(ctx context.Context, pool string, id int64) ([]*dspool.JoinToken, error) {
	var out []*dspool.JoinToken
	err := db.tx(ctx, func(tx *sql.Tx) error {
		now := unixNano(db.now())
		if id != 0 {
			t, err := scanJoinToken(tx.QueryRow(`SELECT `+joinTokenCols+` FROM join_tokens WHERE pool = ? AND rowid = ?`, pool, id))
			if errors.Is(err, sql.ErrNoRows) {
				return dspool.Errorf(dspool.ENotFound, "pool %s has no join token %d: list them with `dspool pool join-token %s --list`", pool, id, pool)
			}
			if err != nil || t.RevokedAt != nil {
				out = []*dspool.JoinToken{}
				return err
			}
		}
		var err error
		out, err = queryAll(ctx, tx, scanJoinToken, `UPDATE join_tokens SET revoked_at = ? WHERE pool = ? AND revoked_at IS NULL
			AND (? = 0 OR rowid = ?) RETURNING `+joinTokenCols, now, pool, id, id)
		return err
	})
	return out, err
}
